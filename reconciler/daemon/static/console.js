// The console page: ask this server for a single-use ticket, then let noVNC speak
// RFB over the websocket it opens with it. The server logs in to the guest's
// display itself, so no password ever reaches this page.
import RFB from "/novnc/core/rfb.js";

const screen = document.getElementById("screen");
const status = document.getElementById("status");
const reconnect = document.getElementById("reconnect");
const name = screen.dataset.vm;
let rfb = null;

function say(text, state) {
  status.textContent = text;
  document.body.dataset.console = state;
}

async function connect() {
  reconnect.hidden = true;
  say("Asking for a ticket…", "connecting");
  const response = await fetch(
    `/api/v1/consoles/virtualmachine/${encodeURIComponent(name)}`,
    { method: "POST", credentials: "same-origin" },
  );
  if (!response.ok) {
    say(`The console cannot be opened (${response.status}).`, "refused");
    return;
  }
  const ticket = await response.json();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}${ticket.path}?ticket=${encodeURIComponent(ticket.ticket)}`;
  rfb = new RFB(screen, url);
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => {
    say("Connected. Keys typed on the screen go to the guest.", "connected");
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (event) => {
    say(event.detail.clean ? "Disconnected." : "The connection was lost.", "disconnected");
    reconnect.hidden = false;
    rfb = null;
  });
  rfb.addEventListener("credentialsrequired", () => {
    say("The display asked for a password, which this page never has.", "refused");
    rfb.disconnect();
  });
}

document.getElementById("ctrl-alt-del").addEventListener("click", () => {
  if (rfb) rfb.sendCtrlAltDel();
});
reconnect.addEventListener("click", connect);
connect();
