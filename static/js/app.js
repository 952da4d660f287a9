// Site-wide behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them).
// Words come from Django's JavaScript catalogue (/jsi18n/, loaded before this file); without it
// they stay English. Call gettext("...") with a literal so `make messages` finds the string.
if (typeof window.gettext !== "function") {
  window.gettext = (text) => text;
  window.interpolate = (text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => values[name]);
}
document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  const box = document.createElement("div");
  box.className = "messages";
  box.setAttribute("role", "alert");
  box.textContent =
    status === 403
      ? gettext("You are not allowed to do that.")
      : interpolate(gettext("The server answered %(status)s. Please try again."), { status }, true);
  document.querySelector("main")?.prepend(box);
});
