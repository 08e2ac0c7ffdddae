// The sessions view: for each multicast session, its image, group and send rate with a plot of
// the rate over the last two minutes, bytes sent against the image's size, and its clients, the
// one holding the session back first.
import type { SessionRow } from "../view-types.ts";
import { fill, h } from "./dom.ts";
import { bitRate, bytes, clock, plotPoints } from "./format.ts";

const PLOT_WIDTH = 240;
const PLOT_HEIGHT = 48;
const SVG = "http://www.w3.org/2000/svg";

function plot(row: SessionRow): SVGSVGElement {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${PLOT_WIDTH} ${PLOT_HEIGHT}`);
  svg.setAttribute("class", "plot");
  svg.setAttribute("role", "img");
  const top = Math.max(...row.rateHistory, 0);
  svg.setAttribute("aria-label", `send rate of ${row.id} over the last ${row.rateHistory.length} s, peak ${bitRate(top)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", plotPoints(row.rateHistory, PLOT_WIDTH, PLOT_HEIGHT));
  svg.append(line);
  return svg;
}

function card(row: SessionRow): HTMLElement {
  const sent = row.imageBytes > 0 ? `${bytes(row.bytesSent)} of a ${bytes(row.imageBytes)} image (${(row.bytesSent / row.imageBytes).toFixed(2)}×)` : bytes(row.bytesSent);
  return h(
    "article",
    { class: "session", "data-id": row.id },
    h("h3", {}, row.id, " ", h("span", { class: "group" }, `${row.group}:${row.port}`)),
    h("p", {}, h("span", { class: "send-rate" }, bitRate(row.rateBitsPerSecond)), ` · sent ${sent} · ${row.clientCount} client${row.clientCount === 1 ? "" : "s"}`),
    plot(row),
    h("p", { class: "holding" }, row.holdingBack === null ? "No client is loading." : `Holding it back: ${row.holdingBack.client} (${row.holdingBack.why})`),
    row.clients.length === 0
      ? null
      : h(
          "div",
          { class: "scroll" },
          h(
          "table",
          { class: "clients" },
          h("thead", {}, h("tr", {}, ...["Client", "State", "Done", "Loss", "Heard"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, ...row.clients.map((c) => h("tr", { class: row.holdingBack?.client === c.client ? "slow" : "" }, h("td", {}, c.client), h("td", {}, c.state), h("td", {}, `${c.percent.toFixed(0)} %`), h("td", {}, `${(100 * c.lossFraction).toFixed(1)} %`), h("td", {}, clock(c.lastHeardMs))))),
          ),
        ),
  );
}

export class SessionsView {
  private readonly rows = new Map<string, SessionRow>();
  private readonly list = h("div", { class: "cards" });

  element(): HTMLElement {
    return h("section", { id: "sessions", "aria-labelledby": "sessions-title" }, h("h2", { id: "sessions-title" }, "Sessions"), this.list);
  }

  reset(rows: SessionRow[]): void {
    this.rows.clear();
    this.update(rows, []);
  }

  update(changed: SessionRow[], removed: string[]): void {
    for (const id of removed) this.rows.delete(id);
    for (const row of changed) this.rows.set(row.id, row);
    const cards = [...this.rows.values()].sort((a, b) => a.id.localeCompare(b.id)).map(card);
    if (cards.length === 0) fill(this.list, h("p", { class: "note" }, "No session is being served: one starts when a reload needs its image."));
    else fill(this.list, ...cards);
  }
}
