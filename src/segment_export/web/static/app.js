// segment-export: small progressive enhancements. Every page works without this file.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  // "Go back" on error pages.
  document.querySelectorAll("[data-back]").forEach((link) => {
    link.addEventListener("click", (event) => {
      if (history.length > 1) { event.preventDefault(); history.back(); }
    });
  });

  // Selects that reload the form they belong to (the connection picker).
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  // Repeating rows: conditions of the rule builder, attributes of the data matching.
  let rowCounter = 1000;
  document.addEventListener("click", (event) => {
    const add = event.target.closest("[data-add-row]");
    if (add) {
      const list = document.getElementById(add.dataset.addRow);
      const template = document.getElementById(add.dataset.addRow + "-template");
      rowCounter += 1;
      const html = template.innerHTML.replaceAll("__n__", String(rowCounter));
      list.insertAdjacentHTML("beforeend", html);
      const row = list.lastElementChild;
      row.querySelector("input, select")?.focus();
      list.dispatchEvent(new Event("change", { bubbles: true }));
      return;
    }
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      const row = remove.closest("[data-row]");
      const list = row.parentElement;
      if (list.children.length > 1) {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        next?.querySelector("input, select")?.focus();
      } else {
        row.querySelectorAll("input").forEach((input) => { input.value = ""; });
        row.querySelectorAll("select").forEach((select) => { select.selectedIndex = 0; });
      }
      list.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // Segment form: one editor at a time, and the live member count.
  const segmentForm = document.getElementById("segment-form");
  if (segmentForm) {
    const showKind = () => {
      const kind = segmentForm.querySelector("input[data-kind]:checked")?.value || "builder";
      segmentForm.querySelectorAll("[data-kind-panel]").forEach((panel) => {
        panel.hidden = panel.dataset.kindPanel !== kind;
      });
    };
    segmentForm.querySelectorAll("input[data-kind]").forEach((r) => r.addEventListener("change", showKind));
    showKind();

    const target = document.getElementById("preview");
    let timer = null;
    let sequence = 0;
    const preview = async () => {
      const mine = ++sequence;
      target.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(segmentForm.dataset.preview, {
          method: "POST",
          body: new FormData(segmentForm),
          headers: { "X-CSRF-Token": csrf(), "X-Fragment": "1" },
          credentials: "same-origin",
        });
        if (mine === sequence) { target.innerHTML = await response.text(); }
      } catch (error) {
        if (mine === sequence) { target.textContent = target.dataset.textFailed || "The preview could not be loaded."; }
      } finally {
        target.removeAttribute("aria-busy");
      }
    };
    const schedule = () => { clearTimeout(timer); timer = setTimeout(preview, 350); };
    segmentForm.addEventListener("input", schedule);
    segmentForm.addEventListener("change", schedule);
    segmentForm.querySelector("[data-preview-button]")?.addEventListener("click", (event) => {
      event.preventDefault();
      preview();
    });
    if (segmentForm.querySelector('select[name="cond_field"]')?.value ||
        segmentForm.querySelector("#expression")?.value || segmentForm.querySelector("#rule_json")?.value) {
      preview();
    }
  }

  // Export form: warn when the chosen segments together exceed the contact limit.
  const exportForm = document.getElementById("export-form");
  if (exportForm) {
    const warning = document.getElementById("size-warning");
    const check = () => {
      const limit = Number(exportForm.querySelector("#max_contacts")?.value || exportForm.dataset.limit);
      let total = 0;
      exportForm.querySelectorAll('input[name="segment_ids"]:checked').forEach((box) => {
        total += Number(box.dataset.size || 0);
      });
      if (warning) { warning.hidden = !(limit && total > limit); }
    };
    exportForm.addEventListener("change", check);
    check();
  }

  // Run page: follow a run that is still working, then show its report.
  const live = document.getElementById("run-live");
  if (live && live.dataset.finished === "false") {
    const bar = document.getElementById("run-progress");
    const text = document.getElementById("run-progress-text");
    const status = document.getElementById("run-status");
    // Words come translated from the page (data-text-*), numbers in the page language.
    const fmt = new Intl.NumberFormat(document.documentElement.lang || undefined);
    const words = live.dataset;
    const paused = live.dataset.paused === "true";
    const poll = async () => {
      try {
        const response = await fetch("/api/runs/" + encodeURIComponent(live.dataset.run), {
          credentials: "same-origin", headers: { Accept: "application/json" },
        });
        if (response.ok) {
          const run = await response.json();
          if (run.finished || (paused && run.status !== "paused")) { window.location.reload(); return; }
          if (paused) { setTimeout(poll, 60000); return; }
          const p = run.progress;
          if (p.fraction !== null) { bar.value = p.fraction; }
          text.textContent = p.to_send !== null
            ? words.textProgress.replace("{sent}", fmt.format(p.sent)).replace("{total}", fmt.format(p.to_send))
            : (run.status === "queued" ? words.textQueued : words.textReading);
          const badge = status.querySelector(".badge");
          if (badge) { badge.textContent = run.status === "running" ? words.textRunning : badge.textContent; }
        }
      } catch (error) { /* the next poll tries again */ }
      setTimeout(poll, paused ? 60000 : 1000);
    };
    setTimeout(poll, paused ? 60000 : 700);
  }
})();
