// The image catalog, with what `discus info` says of each image on request (partitions,
// filesystems, sizes, signature), fetched when the admin opens it.
import type { ImageSummary } from "../../image/summary.ts";
import type { ImageRow } from "../view-types.ts";
import { call } from "./api.ts";
import { fill, h } from "./dom.ts";
import { bytes } from "./format.ts";

function details(s: ImageSummary): HTMLElement {
  return h(
    "div",
    { class: "info" },
    h("p", {}, `${s.partitionTable.kind} table · ${s.codec} level ${s.level} · ${s.chunks} chunks of ${bytes(s.chunkBytes)} · ${bytes(s.dataBytes)} captured, ${bytes(s.skippedBytes)} free space skipped · ${s.signedBy === null ? "unsigned" : `signed, key ${s.signedBy}`}`),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...["Area", "Start", "Size", "Filesystem", "Captured"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...s.areas.map((a) => h("tr", {}, h("td", {}, a.partition === null ? a.type : `part ${a.partition}`), h("td", {}, bytes(a.startBytes)), h("td", {}, bytes(a.sizeBytes)), h("td", {}, a.fs ? `${a.fs}${a.label ? ` "${a.label}"` : ""}` : a.captured), h("td", {}, bytes(a.capturedBytes))))),
    ),
  );
}

export class ImagesView {
  private readonly body = h("tbody");

  element(): HTMLElement {
    return h(
      "section",
      { id: "images", "aria-labelledby": "images-title" },
      h("h2", { id: "images-title" }, "Images"),
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Disk", "File", "Chunks", "Signed", "Group", ""].map((t) => h("th", { scope: "col" }, t)))), this.body)),
    );
  }

  reset(rows: ImageRow[]): void {
    fill(this.body, ...rows.map((r) => this.row(r)));
  }

  private row(r: ImageRow): HTMLTableRowElement {
    const more = h("td", {});
    const button = h("button", { type: "button", "aria-expanded": "false", onclick: () => void this.open(r.id, more, button) }, "Details");
    more.append(button);
    return h("tr", { "data-id": r.id }, h("th", { scope: "row" }, r.id), h("td", {}, bytes(r.sourceBytes)), h("td", {}, bytes(r.fileBytes)), h("td", {}, String(r.dataChunks)), h("td", {}, r.signed ? "yes" : "no"), h("td", {}, r.group), more);
  }

  private async open(name: string, cell: HTMLElement, button: HTMLButtonElement): Promise<void> {
    const shown = cell.querySelector(".info");
    if (shown !== null) {
      shown.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    try {
      cell.append(details(await call<ImageSummary>("GET", `/api/images/${encodeURIComponent(name)}/info`)));
      button.setAttribute("aria-expanded", "true");
    } catch (e) {
      cell.append(h("p", { class: "info error" }, (e as Error).message));
    }
  }
}
