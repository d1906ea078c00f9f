// FaceGate console: the live event feed, confirmations, copy, and enrolment from the camera.
// No framework; every value from the server is inserted as text, never as HTML.
"use strict";

function liveFeed() {
  const live = document.getElementById("live");
  const tbody = document.querySelector("#events tbody");
  const tmpl = document.getElementById("row-template");
  if (!live || !tbody || !tmpl) return;
  let after = Number(live.dataset.after || 0);
  const base = live.dataset.poll;
  let failures = 0;

  function cell(row, key) { return row.querySelector('[data-k="' + key + '"]'); }

  function render(e) {
    const row = tmpl.content.firstElementChild.cloneNode(true);
    row.dataset.id = e.id;
    row.classList.add("fresh");
    const link = document.createElement("a");
    link.href = e.url; link.textContent = e.created_at;
    cell(row, "created_at").appendChild(link);
    cell(row, "door").textContent = e.door;
    const badge = cell(row, "decision");
    badge.textContent = e.decision; badge.classList.add(e.decision);
    cell(row, "reason").textContent = e.reason;
    cell(row, "person").textContent = (e.person || "—") + (e.claim ? " (claim " + e.claim + ")" : "");
    cell(row, "distance").textContent = (e.distance ?? "—") + " / " + (e.tau ?? "—");
    cell(row, "liveness").textContent = e.liveness || "—";
    const snap = cell(row, "snapshot");
    if (e.snapshot_url) {
      const a = document.createElement("a"); a.href = e.url;
      const img = document.createElement("img");
      img.className = "thumb"; img.src = e.snapshot_url; img.alt = "snapshot of event " + e.id;
      a.appendChild(img); snap.appendChild(a);
    } else {
      const none = document.createElement("span"); none.className = "muted"; none.textContent = "none";
      snap.appendChild(none);
    }
    return row;
  }

  async function poll() {
    const sep = base.includes("?") ? "&" : "?";
    try {
      const res = await fetch(base + sep + "after_id=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.status === 401) { window.location = "/console/login"; return; }
      if (!res.ok) throw new Error(String(res.status));
      const body = await res.json();
      const empty = tbody.querySelector("tr.empty");
      if (body.events.length && empty) empty.remove();
      for (const e of body.events.slice().reverse()) {
        tbody.insertBefore(render(e), tbody.firstChild);
        after = Math.max(after, e.id);
      }
      if (body.truncated) live.textContent = "● more events arrived: reload";
      failures = 0;
      live.classList.remove("paused");
    } catch (err) {
      failures += 1;
      live.classList.add("paused");
    }
    setTimeout(poll, Math.min(3000 * (1 + failures), 30000));
  }
  setTimeout(poll, 3000);
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => { if (!window.confirm(form.dataset.confirm)) ev.preventDefault(); });
  }
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; });
    });
  }
}

function camera() {
  const start = document.getElementById("camera-start");
  const box = document.getElementById("camera");
  const video = document.getElementById("camera-video");
  const shot = document.getElementById("camera-shot");
  const input = document.getElementById("photo-input");
  if (!start || !box || !video || !shot || !input) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { start.hidden = true; return; }
  start.addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
      box.hidden = false;
    } catch (err) {
      start.textContent = "Camera unavailable";
      start.disabled = true;
    }
  });
  shot.addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      const files = new DataTransfer();
      files.items.add(new File([blob], "camera.jpg", { type: "image/jpeg" }));
      input.files = files.files;
      for (const track of video.srcObject.getTracks()) track.stop();
      input.form.submit();
    }, "image/jpeg", 0.92);
  });
}


// The occlusion map costs about a second of CPU: it is drawn only when its section is opened.
function lazyExplain() {
  const box = document.getElementById("explain");
  if (!box) return;
  box.addEventListener("toggle", () => {
    const img = box.querySelector("img");
    if (box.open && img && !img.getAttribute("src")) img.src = box.dataset.src;
  });
}
document.addEventListener("DOMContentLoaded", () => { liveFeed(); confirmations(); camera(); lazyExplain(); });
