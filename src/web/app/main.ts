// The dashboard page: asks who it is logged in as, shows the login form if nobody, and otherwise
// builds the four views and feeds them from the live stream (GET /api/stream): a snapshot first,
// then only what changed, at most once a second.
import type { Role, StreamMessage } from "../view-types.ts";
import { ApiError, call } from "./api.ts";
import { byId, fill, h } from "./dom.ts";
import { EventsView } from "./events.ts";
import { FleetView } from "./fleet.ts";
import { ImagesView } from "./images.ts";
import { SessionsView } from "./sessions.ts";

const app = byId("app");

function showLogin(message: string): void {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "login-help" });
  const error = h("p", { id: "login-error", class: "error", role: "alert" }, message);
  const form = h(
    "form",
    { id: "login", onsubmit: (e: Event) => void submit(e) },
    h("h1", {}, "discus"),
    // A fixed user name: browsers and password managers expect one beside a password field.
    h("input", { type: "text", name: "username", value: "discus", autocomplete: "username", hidden: true }),
    h("label", { for: "token" }, "Admin or viewer token"),
    input,
    h("p", { id: "login-help", class: "note" }, "The tokens are in the server's state directory: admin.token acts, viewer.token only looks."),
    h("button", { type: "submit" }, "Log in"),
    error,
  );
  async function submit(e: Event): Promise<void> {
    e.preventDefault();
    try {
      const r = await call<{ role: Role }>("POST", "/api/login", { token: input.value });
      input.value = "";
      start(r.role);
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : `the server did not answer: ${(err as Error).message}`;
      input.focus();
    }
  }
  fill(app, form);
  input.focus();
}

function start(role: Role): void {
  const status = h("p", { id: "status", role: "status" });
  const say = (text: string, isError = false) => {
    status.textContent = text;
    status.className = isError ? "error" : "";
  };
  const fleet = new FleetView(role, say);
  const sessions = new SessionsView();
  const images = new ImagesView();
  const events = new EventsView();
  const live = h("span", { id: "live", class: "live" }, "connecting…");
  const header = h(
    "header",
    {},
    h("h1", {}, "discus"),
    h("nav", { "aria-label": "sections" }, ...[["fleet", "Fleet"], ["sessions", "Sessions"], ["images", "Images"], ["events", "Events"]].map(([id, t]) => h("a", { href: `#${id}` }, t!))),
    live,
    h("span", { id: "role" }, role),
    h("button", { id: "logout", type: "button", onclick: () => void logout() }, "Log out"),
  );
  fill(app, header, status, fleet.element(), sessions.element(), images.element(), events.element());

  const source = new EventSource("/api/stream");
  const apply = (m: StreamMessage) => {
    if (m.kind === "snapshot") {
      fleet.reset(m.nodes);
      sessions.reset(m.sessions);
      images.reset(m.images);
      events.reset(m.events);
    } else {
      fleet.update(m.nodes, m.removedNodes);
      sessions.update(m.sessions, m.removedSessions);
      if (m.images !== null) images.reset(m.images);
      events.add(m.events);
    }
    if (m.kind === "snapshot" || m.images !== null) fleet.setImages((m.images ?? []).map((i) => i.id));
    live.textContent = `live · ${new Date(m.atMs).toLocaleTimeString([], { hour12: false })}`;
  };
  for (const kind of ["snapshot", "update"]) source.addEventListener(kind, (e) => apply(JSON.parse((e as MessageEvent<string>).data) as StreamMessage));
  source.onerror = () => {
    live.textContent = "reconnecting…";
    // A stream refused for its login (a restarted server forgets logins) will not come back.
    if (source.readyState === EventSource.CLOSED) void whoami().then((r) => (r === null ? showLogin("Your login ended; log in again.") : undefined));
  };
  async function logout(): Promise<void> {
    source.close();
    await call("POST", "/api/logout").catch(() => undefined);
    showLogin("");
  }
}

async function whoami(): Promise<Role | null> {
  return (await call<{ role: Role | null }>("GET", "/api/whoami")).role;
}

whoami().then(
  (role) => (role === null ? showLogin("") : start(role)),
  (e: Error) => showLogin(`the server did not answer: ${e.message}`),
);
