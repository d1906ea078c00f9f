"""Use cases that combine the layers: vision (faces), gallery (FAISS), store (SQL).

Routers call these; these never import FastAPI.
"""
