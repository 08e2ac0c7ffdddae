// The fleet table: one row per node, updated in place as the stream tells of changes (a row is
// rebuilt only when its node changed), filtered by tag, state and name, with the admin's
// actions on the selected rows: reload, cancel, power cycle.
import { NODE_STATES } from "../../daemon/model.ts";
import type { FleetRow, Role } from "../view-types.ts";
import { ApiError, call } from "./api.ts";
import { byId, fill, h, setText } from "./dom.ts";
import { bytesRate, clock, duration, etaSeconds, type Sample } from "./format.ts";

/** Jobs whose first progress the page remembers for ETAs; older ones are forgotten first. */
const MAX_ETA_SAMPLES = 10_000;

interface Filters {
  tag: string;
  state: string;
  name: string;
}

/**
 * Makes `old` show what `fresh` shows, replacing only the cells that differ: a progress report
 * changes two cells of nine, so the browser restyles and lays out little, and a focused checkbox
 * in an unchanged cell keeps the keyboard where it was.
 */
function patchRow(old: HTMLTableRowElement, fresh: HTMLTableRowElement): void {
  if (old.className !== fresh.className) old.className = fresh.className;
  if (old.dataset.state !== fresh.dataset.state) old.dataset.state = fresh.dataset.state;
  const cells = [...fresh.cells];
  cells.forEach((cell, i) => {
    const was = old.cells[i];
    if (was === undefined) old.append(cell);
    else if (!was.isEqualNode(cell)) was.replaceWith(cell);
  });
}

export class FleetView {
  private readonly rows = new Map<string, FleetRow>();
  private readonly elements = new Map<string, HTMLTableRowElement>();
  private readonly selected = new Set<string>();
  private readonly firstSeen = new Map<number, Sample>();
  private readonly filters: Filters = { tag: "", state: "", name: "" };
  private readonly body = h("tbody");
  private images: string[] = [];
  private tags = "";

  constructor(
    private readonly role: Role,
    private readonly say: (text: string, isError?: boolean) => void,
  ) {}

  /** The section, built once. */
  element(): HTMLElement {
    const admin = this.role === "admin";
    return h(
      "section",
      { id: "fleet", "aria-labelledby": "fleet-title" },
      h("h2", { id: "fleet-title" }, "Fleet ", h("span", { id: "fleet-count", class: "count" })),
      this.filterBar(),
      admin ? this.actionBar() : h("p", { class: "note" }, "Viewer: read only. Log in with the admin token to act."),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { id: "fleet-table" },
          h("thead", {}, h("tr", {}, admin ? h("th", { scope: "col" }, h("input", { type: "checkbox", id: "select-shown", "aria-label": "select every node shown", onchange: (e: Event) => this.selectShown((e.target as HTMLInputElement).checked) })) : null,
            ...["Name", "MAC", "Tags", "State", "Image", "Progress", "Last error", "Last report"].map((t) => h("th", { scope: "col", class: `c-${t.toLowerCase().replace(/ /g, "-")}` }, t)))),
          this.body,
        ),
      ),
      admin ? this.confirmDialog() : null,
    );
  }

  private filterBar(): HTMLElement {
    const set = (key: keyof Filters) => (e: Event) => {
      this.filters[key] = (e.target as HTMLInputElement | HTMLSelectElement).value;
      this.applyFilters();
    };
    return h(
      "div",
      { class: "bar", role: "search" },
      h("label", {}, "Tag ", h("select", { id: "filter-tag", onchange: set("tag") }, h("option", { value: "" }, "any"))),
      h("label", {}, "State ", h("select", { id: "filter-state", onchange: set("state") }, h("option", { value: "" }, "any"), ...NODE_STATES.map((s) => h("option", { value: s }, s)))),
      h("label", {}, "Name ", h("input", { id: "filter-name", type: "search", placeholder: "contains", oninput: set("name") })),
    );
  }

  private actionBar(): HTMLElement {
    return h(
      "div",
      { class: "bar actions" },
      h("label", {}, "Image ", h("select", { id: "reload-image" }, h("option", { value: "" }, "each node's own"))),
      h("button", { id: "act-reload", type: "button", disabled: true, onclick: () => this.confirm("reload") }, "Reload…"),
      h("button", { id: "act-cancel", type: "button", disabled: true, onclick: () => this.confirm("cancel") }, "Cancel…"),
      h("button", { id: "act-power", type: "button", disabled: true, onclick: () => this.confirm("power") }, "Power cycle…"),
      h("span", { id: "selected-count", class: "count" }, "none selected"),
    );
  }

  private confirmDialog(): HTMLElement {
    return h(
      "dialog",
      { id: "confirm", "aria-labelledby": "confirm-text" },
      h("form", { method: "dialog" }, h("p", { id: "confirm-text" }), h("div", { class: "bar" }, h("button", { id: "confirm-yes", value: "yes" }, "Yes"), h("button", { id: "confirm-no", value: "no", autofocus: true }, "Back"))),
    );
  }

  setImages(names: string[]): void {
    if (names.join("\n") === this.images.join("\n") || this.role !== "admin") return;
    this.images = names;
    const select = byId<HTMLSelectElement>("reload-image");
    const keep = select.value;
    fill(select, h("option", { value: "" }, "each node's own"), ...names.map((n) => h("option", { value: n }, n)));
    select.value = names.includes(keep) ? keep : "";
  }

  /** The whole fleet (a snapshot): rows in name order. */
  reset(rows: FleetRow[]): void {
    this.rows.clear();
    this.elements.clear();
    this.body.replaceChildren();
    for (const row of [...rows].sort((a, b) => a.name.localeCompare(b.name))) {
      this.rows.set(row.id, row);
      const tr = this.rowElement(row);
      this.elements.set(row.id, tr);
      this.body.append(tr);
    }
    for (const id of [...this.selected]) if (!this.rows.has(id)) this.selected.delete(id);
    this.afterChange();
  }

  update(changed: FleetRow[], removed: string[]): void {
    for (const id of removed) {
      this.elements.get(id)?.remove();
      this.elements.delete(id);
      this.rows.delete(id);
      this.selected.delete(id);
    }
    for (const row of changed) {
      const old = this.elements.get(row.id);
      this.rows.set(row.id, row);
      const tr = this.rowElement(row);
      if (old === undefined) {
        this.elements.set(row.id, tr);
        this.insertSorted(tr, row.name);
      } else patchRow(old, tr);
    }
    this.afterChange();
  }

  private insertSorted(tr: HTMLTableRowElement, name: string): void {
    const next = [...this.elements.entries()].find(([id, el]) => el !== tr && el.isConnected && this.rows.get(id)!.name.localeCompare(name) > 0);
    if (next === undefined) this.body.append(tr);
    else next[1].before(tr);
  }

  private afterChange(): void {
    const tags = [...new Set([...this.rows.values()].flatMap((r) => r.tags))].sort();
    if (tags.join(" ") !== this.tags) {
      this.tags = tags.join(" ");
      const select = byId<HTMLSelectElement>("filter-tag");
      fill(select, h("option", { value: "" }, "any"), ...tags.map((t) => h("option", { value: t }, t)));
      select.value = tags.includes(this.filters.tag) ? this.filters.tag : "";
      this.filters.tag = select.value;
    }
    this.applyFilters();
  }

  private shown(row: FleetRow): boolean {
    const f = this.filters;
    return (f.tag === "" || row.tags.includes(f.tag)) && (f.state === "" || row.state === f.state) && (f.name === "" || row.name.includes(f.name.toLowerCase()));
  }

  private applyFilters(): void {
    let shown = 0;
    for (const [id, tr] of this.elements) {
      const visible = this.shown(this.rows.get(id)!);
      // Written only when it changes: each write would make the browser restyle the row.
      if (tr.hidden === visible) tr.hidden = !visible;
      if (visible) shown++;
    }
    setText(byId("fleet-count"), shown === this.rows.size ? `${this.rows.size} nodes` : `${shown} of ${this.rows.size} nodes shown`);
    this.selectionChanged();
  }

  private rowElement(row: FleetRow): HTMLTableRowElement {
    const job = row.job;
    const failed = job?.state === "failed" || row.state === "failed";
    const tr = h("tr", { "data-id": row.id, "data-state": row.state, class: failed ? "failed" : "" });
    if (this.role === "admin") {
      tr.append(h("td", {}, h("input", { type: "checkbox", class: "select", "aria-label": `select ${row.name}`, checked: this.selected.has(row.id), onchange: (e: Event) => this.select(row.id, (e.target as HTMLInputElement).checked) })));
    }
    const reason = job?.state === "failed" ? (job.error ?? "failed") : "";
    tr.append(
      // On a phone the reason sits under the name (the error column is off screen there).
      h("th", { scope: "row", class: "name" }, row.name, reason === "" ? null : h("div", { class: "why", "aria-hidden": "true" }, reason)),
      h("td", { class: "c-mac" }, row.id),
      h("td", { class: "c-tags" }, row.tags.join(" ")),
      h("td", {}, h("span", { class: `state s-${row.state}` }, row.state)),
      h("td", {}, row.image ?? ""),
      h("td", { class: "progress" }, ...this.progressCell(row)),
      h("td", { class: "error" }, reason),
      h("td", { class: "c-last-report" }, clock(job?.updatedMs ?? row.lastSeenMs)),
    );
    return tr;
  }

  private progressCell(row: FleetRow): (Node | string)[] {
    const job = row.job;
    if (job === null || job.kind !== "load" || job.state === "cancelled" || job.state === "queued") return [job?.state === "queued" ? "queued" : ""];
    const done = job.state === "written" || job.state === "booted";
    const percent = done ? 100 : job.percent;
    const parts: (Node | string)[] = [h("progress", { max: 100, value: percent.toFixed(1), "aria-label": `${row.name} progress` }), h("span", { class: "pct" }, `${percent.toFixed(0)} %`)];
    if (job.state === "loading" && job.bytesPerSecond > 0) parts.push(h("span", { class: "rate" }, bytesRate(job.bytesPerSecond)));
    const eta = job.state === "loading" ? this.eta(job.id, job.updatedMs, job.percent) : null;
    if (eta !== null) parts.push(h("span", { class: "eta" }, `ETA ${duration(eta)}`));
    return parts;
  }

  private eta(jobId: number, atMs: number, percent: number): number | null {
    const first = this.firstSeen.get(jobId);
    if (first === undefined) {
      if (this.firstSeen.size >= MAX_ETA_SAMPLES) this.firstSeen.delete(this.firstSeen.keys().next().value!);
      this.firstSeen.set(jobId, { atMs, percent });
      return null;
    }
    return etaSeconds(first, { atMs, percent });
  }

  private select(id: string, on: boolean): void {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    // The attribute mirrors the box, so patchRow sees an unchanged cell as equal and leaves it be.
    const box = this.elements.get(id)?.querySelector<HTMLInputElement>("input.select");
    if (box) {
      box.checked = on;
      box.toggleAttribute("checked", on);
    }
    this.selectionChanged();
  }

  private selectShown(on: boolean): void {
    for (const [id, tr] of this.elements) {
      if (!tr.hidden) this.select(id, on);
    }
  }

  /** The selected nodes still shown: hidden rows are never acted on. */
  private targets(): FleetRow[] {
    return [...this.selected].map((id) => this.rows.get(id)!).filter((r) => r !== undefined && this.shown(r));
  }

  private selectionChanged(): void {
    if (this.role !== "admin") return;
    const n = this.targets().length;
    setText(byId("selected-count"), n === 0 ? "none selected" : `${n} selected`);
    for (const id of ["act-reload", "act-cancel", "act-power"]) {
      const button = byId<HTMLButtonElement>(id);
      if (button.disabled !== (n === 0)) button.disabled = n === 0;
    }
  }

  private confirm(action: "reload" | "cancel" | "power"): void {
    const nodes = this.targets();
    const image = byId<HTMLSelectElement>("reload-image").value;
    const names = nodes.length <= 5 ? nodes.map((n) => n.name).join(", ") : `${nodes.length} nodes`;
    const what = {
      reload: `Reload ${names} with ${image === "" ? "each node's own image" : `image ${image}`}? Their disks will be overwritten.`,
      cancel: `Cancel the jobs of ${names}?`,
      power: `Power-cycle ${names}?`,
    }[action];
    const dialog = byId<HTMLDialogElement>("confirm");
    byId("confirm-text").textContent = what;
    dialog.onclose = () => {
      if (dialog.returnValue === "yes") void this.act(action, nodes, image);
    };
    dialog.returnValue = "";
    dialog.showModal();
  }

  private async act(action: "reload" | "cancel" | "power", nodes: FleetRow[], image: string): Promise<void> {
    const selectors = nodes.map((n) => n.id);
    try {
      if (action === "reload") {
        const jobs = await call<{ id: number }[]>("POST", "/api/reload", { selectors, image: image === "" ? null : image });
        this.say(`Reload started: job${jobs.length === 1 ? "" : "s"} ${jobs.map((j) => j.id).join(", ")}`);
      } else if (action === "cancel") {
        const jobs = await call<{ id: number }[]>("POST", "/api/cancel", { selectors });
        this.say(jobs.length === 0 ? "No job to cancel" : `Cancelled job${jobs.length === 1 ? "" : "s"} ${jobs.map((j) => j.id).join(", ")}`);
      } else {
        const r = await call<{ nodes: string[] }>("POST", "/api/power", { selectors });
        this.say(`Power cycle asked for ${r.nodes.join(", ")}`);
      }
    } catch (e) {
      this.say(e instanceof ApiError ? `${action} refused (${e.status}): ${e.message}` : `${action} failed: ${(e as Error).message}`, true);
    }
  }
}
