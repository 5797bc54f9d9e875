// Live bus feed: an EventSource on /ui/events with the chosen subject filter.
(function () {
  const list = document.getElementById("feed");
  const input = document.getElementById("subject");
  let source = null;
  function connect() {
    if (source) source.close();
    source = new EventSource("/ui/events?subject=" + encodeURIComponent(input.value));
    source.addEventListener("message", (event) => {
      const item = JSON.parse(event.data);
      const li = document.createElement("li");
      const at = new Date(item.at * 1000).toLocaleTimeString();
      li.textContent = `${at} ${item.type} from ${item.sender}: ${item.text} (${item.subject})`;
      li.className = "live";
      list.prepend(li);
    });
    source.addEventListener("error", () => { /* the browser reconnects by itself */ });
  }
  document.getElementById("apply").addEventListener("click", connect);
  // Enter in the filter applies it instead of reloading the page (no inline handler: CSP)
  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    connect();
  });
  connect();
})();
