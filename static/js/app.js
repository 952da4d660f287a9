// Site-wide behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them).
document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  const box = document.createElement("div");
  box.className = "messages";
  box.setAttribute("role", "alert");
  box.textContent = status === 403 ? "You are not allowed to do that." : `The server answered ${status}. Please try again.`;
  document.querySelector("main")?.prepend(box);
});
