// Keyboard-first review pages. No inline scripts (CSP); everything hangs off data attributes
// in the server-rendered HTML, so the pages still work as plain forms without this file.
(() => {
  "use strict";

  const typing = (el) =>
    el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(el.type)));

  const visible = (el) => el && !el.closest("[hidden]") && el.offsetParent !== null;
  // An item being replaced stays in the page, hidden, until the server confirms its submission.
  const live = (el) => !el.closest(".rv-previous");

  function activeForm() {
    return Array.from(document.querySelectorAll("form[data-enter-submits]")).find(live);
  }

  function submit(form) {
    if (!form) return;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  // First pass: show the fix/discard block only when a criterion is 0, and the edit fields
  // only when "fix" is chosen.
  function syncFirstPass(form) {
    const zero = form.querySelector('.rv-criterion input[value="0"]:checked') !== null;
    const action = form.querySelector('input[name="action"]:checked');
    form.querySelectorAll("[data-zero-only]").forEach((el) => { el.hidden = !zero; });
    form.querySelectorAll("[data-pass-only]").forEach((el) => { el.hidden = zero; });
    form.querySelectorAll("[data-fix-only]").forEach((el) => {
      el.hidden = !(action && action.value === "fix");
    });
    if (!zero && action) action.checked = false;
  }

  function setActiveRow(rows, index) {
    rows.forEach((row, i) => row.classList.toggle("rv-active", i === index));
    const row = rows[index];
    if (!row) return;
    row.scrollIntoView({ block: "nearest" });
    // Spell out the highlighted dimension's levels once, under the table.
    const box = row.closest("form") && row.closest("form").querySelector("[data-level-box]");
    if (!box) return;
    box.replaceChildren(...Array.from(row.querySelectorAll("label")).map((label) => {
      const p = document.createElement("p");
      const b = document.createElement("b");
      const level = label.querySelector("input").value;
      const text = label.querySelector(".rv-level");
      b.textContent = level + " ";
      p.append(b, text ? text.textContent : "");
      p.title = text ? text.textContent : "";
      return p;
    }));
    box.hidden = false;
  }

  function rubricRows() {
    return Array.from(document.querySelectorAll("[data-rubric-row]")).filter(live);
  }

  function init(root) {
    root.querySelectorAll("form[data-first-pass]").forEach((form) => {
      form.dataset.clientShownAt = String(Date.now());
      syncFirstPass(form);
    });
    root.querySelectorAll("form[data-rubric]").forEach((form) => {
      form.dataset.clientShownAt = String(Date.now());
      form.querySelectorAll(".rv-rubric").forEach((table) => table.classList.add("rv-js"));
      const rows = rubricRows();
      const firstOpen = rows.findIndex((row) => !row.querySelector("input:checked"));
      setActiveRow(rows, firstOpen === -1 ? 0 : firstOpen);
      rows.forEach((row, i) => row.addEventListener("click", () => setActiveRow(rows, i)));
    });
  }

  document.addEventListener("change", (event) => {
    const form = event.target.closest && event.target.closest("form[data-first-pass]");
    if (form) syncFirstPass(form);
  });

  // A pass needs the reviewer's explicit confirmation when the CoT concludes on another option
  // than the key, or when it comes sooner than the project's minimum time on an item. The
  // server enforces both; checking here first saves a round trip and keeps the item on screen.
  function confirmationMissing(form, elapsed) {
    if (!form.matches("form[data-first-pass]")) return "";
    if (form.querySelector('.rv-criterion input[value="0"]:checked')) return "";
    const hint = form.querySelector("[data-confirm-hint]");
    const mismatch = form.querySelector('input[name="confirm_mismatch"]');
    if (mismatch && !mismatch.checked) {
      if (hint) { hint.textContent = hint.dataset.mismatch || ""; hint.hidden = false; }
      mismatch.closest("label").classList.add("rv-attention");
      return "mismatch";
    }
    const minimum = Number(form.dataset.minSeconds || 0);
    const fast = form.querySelector('input[name="confirm_fast"]');
    if (fast && !fast.checked && elapsed < minimum) {
      const line = fast.closest("[data-fast-confirm]");
      line.hidden = false;
      line.classList.add("rv-attention");
      if (hint) {
        hint.textContent = (hint.dataset.fast || "").replace("%(seconds)s", String(elapsed));
        hint.hidden = false;
      }
      return "fast";
    }
    return "";
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const shown = Number(form.dataset && form.dataset.clientShownAt);
    const elapsed = shown ? Math.floor((Date.now() - shown) / 1000) : 0;
    if (confirmationMissing(form, elapsed)) {
      // Capture phase on the document: htmx's own listener on the form never sees it.
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    const seconds = form.querySelector('input[name="seconds"]');
    if (seconds && shown) seconds.value = String(elapsed);
  }, true);

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      else if (event.key === "Enter" && event.ctrlKey) {
        event.preventDefault();
        submit(target.closest("form"));
      }
      return;
    }
    if (event.ctrlKey) return;
    const key = event.key;
    if (key === "Enter") {
      if (target && (target.tagName === "BUTTON" || target.tagName === "A" || target.tagName === "SUMMARY")) return;
      const form = activeForm();
      if (form) { event.preventDefault(); submit(form); }
      return;
    }
    // Rubric rows: 0/1/2 score the active dimension and move on; arrows move between rows.
    const rows = rubricRows();
    if (rows.length) {
      const index = Math.max(0, rows.findIndex((row) => row.classList.contains("rv-active")));
      if (["0", "1", "2"].includes(key)) {
        const input = rows[index].querySelector(`input[value="${key}"]`);
        if (input) { input.checked = true; input.dispatchEvent(new Event("change", { bubbles: true })); }
        setActiveRow(rows, Math.min(index + 1, rows.length - 1));
        event.preventDefault();
        return;
      }
      if (key === "ArrowDown" || key === "ArrowUp") {
        setActiveRow(rows, key === "ArrowDown" ? Math.min(index + 1, rows.length - 1) : Math.max(index - 1, 0));
        event.preventDefault();
        return;
      }
    }
    for (const fieldset of document.querySelectorAll("[data-toggle-keys]")) {
      if (live(fieldset) && fieldset.dataset.toggleKeys.split(" ").includes(key)) {
        const other = fieldset.querySelector("input:not(:checked)");
        if (other) { other.checked = true; other.dispatchEvent(new Event("change", { bubbles: true })); }
        event.preventDefault();
        return;
      }
    }
    const el = Array.from(document.querySelectorAll(`[data-key="${CSS.escape(key)}"]`)).find(
      (candidate) => live(candidate) && (visible(candidate) || candidate.type === "radio"));
    if (!el) return;
    event.preventDefault();
    if (el.type === "checkbox") {
      el.checked = !el.checked;
      el.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (el.type === "radio") {
      el.checked = true;
      el.dispatchEvent(new Event("change", { bubbles: true }));
      const form = el.closest("form");
      const reason = form && form.querySelector('[name="reason"]');
      if (reason && el.name === "action") reason.focus();
    } else if (typing(el)) {
      el.focus();
    } else {
      el.click();
    }
  });

  // Validation errors come back as 422 with the form re-rendered: swap them in like a 200.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterSwap", (event) => init(event.detail.target));
  window.rvInit = init;
  document.addEventListener("DOMContentLoaded", () => {
    init(document);
    // The keys work from here on: browser tests wait for this before they type.
    document.documentElement.dataset.reviewReady = "1";
  });
})();

// Instant switch on first pass and consensus: the page carries the next (already claimed) item pre-rendered
// in <template id="rv-next">. When a submission cannot fail validation, that item is shown at
// once; when the server answers, only the undo bar and the following prefetch are patched in,
// so nothing the reviewer has started on the new item is overwritten.
(() => {
  "use strict";

  const PREFETCHING = "form[data-first-pass], form[data-prefetch]";

  function predictable(form) {
    if (form.matches("[data-prefetch=panel]")) {
      // Every dimension scored, an answer and a decision, and a comment unless accepting.
      const rows = Array.from(form.querySelectorAll("[data-rubric-row]"));
      if (!rows.length || rows.some((row) => !row.querySelector("input:checked"))) return false;
      const answer = form.querySelector('input[name="answer"]:checked');
      const decision = form.querySelector('input[name="decision"]:checked');
      const comment = (form.querySelector('[name="comment"]') || {}).value || "";
      if (!answer || !decision) return false;
      return decision.value === "accept" || Boolean(comment.trim());
    }
    if (form.matches("[data-prefetch=consensus]")) {
      // A vote the server will take: another answer or "needs work" come with a comment, and
      // agreeing with a flagged key comes with its confirmation.
      const answer = form.querySelector('input[name="answer"]:checked');
      const approve = form.querySelector('input[name="approve_phrasing"]:checked');
      const comment = (form.querySelector('[name="comment"]') || {}).value || "";
      const confirm = form.querySelector('input[name="confirm_mismatch"]');
      if (!answer || !approve) return false;
      const agrees = answer.value === form.dataset.keyAnswer;
      if ((!agrees || approve.value === "0") && !comment.trim()) return false;
      return !(agrees && confirm && !confirm.checked);
    }
    const zero = form.querySelector('.rv-criterion input[value="0"]:checked') !== null;
    if (!zero) return true;
    const action = form.querySelector('input[name="action"]:checked');
    const reason = form.querySelector('[name="reason"]');
    return Boolean(action && action.value === "discard" && reason && reason.value.trim());
  }

  const shownFor = new WeakMap(); // submitted form -> {id, previous}
  let latest = null; // the most recently submitted first-pass form

  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.matches(PREFETCHING)) return;
    latest = form;
    const next = document.getElementById("rv-next");
    const current = form.closest("#rv-current");
    if (!next || !current || !predictable(form)) return;
    const shown = document.createElement("div");
    shown.id = "rv-current";
    shown.dataset.item = next.dataset.item;
    shown.dataset.shownBy = "prefetch";
    shown.append(next.content.cloneNode(true));
    current.removeAttribute("id");
    current.classList.add("rv-previous");
    current.hidden = true;
    current.after(shown);
    next.remove();
    shownFor.set(form, { id: shown.dataset.item, previous: current });
    htmx.process(shown);
    if (next.dataset.url) history.pushState({}, "", next.dataset.url);
    if (window.rvInit) window.rvInit(shown);
    shown.querySelectorAll(PREFETCHING).forEach((f) => {
      f.dataset.clientShownAt = String(Date.now());
      f.dispatchEvent(new Event("change", { bubbles: true }));
    });
    // For pages that measure it: when the next item was on screen.
    document.dispatchEvent(new CustomEvent("rv:shown", { detail: { item: shown.dataset.item } }));
  });

  document.addEventListener("htmx:beforeSwap", (event) => {
    const elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!elt || !elt.matches || !elt.matches(PREFETCHING)) return;
    const optimistic = shownFor.get(elt);
    if (elt !== latest && event.detail.xhr.status === 200) {
      // A later submission is already on its way; its answer brings the newer page.
      event.detail.shouldSwap = false;
      if (optimistic) optimistic.previous.remove();
      return;
    }
    if (!optimistic) return;
    optimistic.previous.remove();
    const doc = new DOMParser().parseFromString(event.detail.serverResponse, "text/html");
    const answered = doc.getElementById("rv-current");
    if (event.detail.xhr.status !== 200 || !answered || answered.dataset.item !== optimistic.id) {
      return; // something unexpected (an error, the item went elsewhere): take the server's page
    }
    event.detail.shouldSwap = false;
    const slot = document.getElementById("review-slot") || document.getElementById("panel-slot");
    slot.querySelectorAll(":scope > .rv-undo, :scope > .rv-notice, :scope > .rv-error, #rv-next")
      .forEach((el) => el.remove());
    const notice = doc.querySelector("body > .rv-notice");
    if (notice) slot.prepend(notice);
    const undo = doc.querySelector(".rv-undo");
    if (undo) { slot.prepend(undo); htmx.process(undo); }
    const following = doc.getElementById("rv-next");
    if (following) slot.append(following);
  });
})();

// Panels page: select every item on the page, and say how many are selected.
(() => {
  "use strict";
  function count(form) {
    const out = form.querySelector("[data-selected-count]");
    if (!out) return;
    const all = form.querySelector("[data-all-matching]");
    const n = form.querySelectorAll('input[name="items"]:checked').length;
    out.textContent = all && all.checked ? "" : (n ? `${n} ✓` : "");
  }
  document.addEventListener("change", (event) => {
    const el = event.target;
    const form = el.closest && el.closest("form.rv-bulk");
    if (!form) return;
    if (el.matches("[data-select-all]")) {
      form.querySelectorAll('input[name="items"]').forEach((box) => { box.checked = el.checked; });
    }
    count(form);
  });
})();
