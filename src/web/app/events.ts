// The audit log, newest first: who did what to what, and when.
import type { EventRow } from "../view-types.ts";
import { fill, h } from "./dom.ts";

/** Events kept on the page; older ones are in GET /api/events and `discus events`. */
const MAX_EVENT_ROWS = 200;

export class EventsView {
  private rows: EventRow[] = [];
  private readonly body = h("tbody");

  element(): HTMLElement {
    return h(
      "section",
      { id: "events", "aria-labelledby": "events-title" },
      h("h2", { id: "events-title" }, "Events"),
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Time", "Who", "What", "On", "Detail"].map((t) => h("th", { scope: "col" }, t)))), this.body)),
    );
  }

  reset(rows: EventRow[]): void {
    this.rows = [];
    this.add(rows);
  }

  /** `fresh` is newest first, as the stream sends it. */
  add(fresh: EventRow[]): void {
    if (fresh.length === 0 && this.rows.length > 0) return;
    this.rows = [...fresh, ...this.rows].slice(0, MAX_EVENT_ROWS);
    fill(this.body, ...this.rows.map((e) => h("tr", { class: e.action.endsWith("failed") ? "failed" : "" }, h("td", {}, new Date(e.atMs).toLocaleString([], { hour12: false })), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.subject), h("td", {}, e.detail))));
  }
}
