"""HTTP layer: routers only; they call vision, gallery and store, never the reverse."""
