// Which nodes a command names: `discus reload web01 tag:lab 'rack3-*' aa:bb:cc:dd:ee:ff`. A
// selector is a name, a MAC, `tag:TAG`, or a glob on names (`*` and `?`). Each must match at
// least one node, so a typo is an error rather than a reload of nothing. Pure.
import { DiscusError } from "../util/errors.ts";
import { normalizeMac, type NodeRecord } from "./model.ts";

export const MAX_SELECTORS = 1000;
export const MAX_SELECTOR_CHARS = 128;

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

function matches(selector: string, node: NodeRecord): boolean {
  if (selector.startsWith("tag:")) return node.tags.includes(selector.slice(4));
  const mac = normalizeMac(selector);
  if (mac !== null && mac === node.mac) return true;
  if (/[*?]/.test(selector)) return globToRegExp(selector).test(node.name);
  return selector === node.name;
}

/** The nodes the selectors name, each once, in the order of `nodes`. */
export function selectNodes(selectors: readonly string[], nodes: readonly NodeRecord[]): NodeRecord[] {
  if (selectors.length === 0) throw new DiscusError("usage", "node selection", "names no node", "Name nodes by name, MAC, tag:TAG or a glob such as 'rack3-*'");
  if (selectors.length > MAX_SELECTORS) throw new DiscusError("usage", "node selection", `has ${selectors.length} selectors, more than ${MAX_SELECTORS}`, "Use tags or globs");
  const chosen = new Set<string>();
  for (const selector of selectors) {
    if (selector.length === 0 || selector.length > MAX_SELECTOR_CHARS) {
      throw new DiscusError("usage", `selector "${selector.slice(0, MAX_SELECTOR_CHARS)}"`, `is empty or longer than ${MAX_SELECTOR_CHARS} characters`, "Name nodes by name, MAC, tag:TAG or a glob");
    }
    const hit = nodes.filter((n) => matches(selector, n));
    if (hit.length === 0) throw new DiscusError("usage", `selector "${selector}"`, "matches no node", "Check `discus node list`");
    for (const n of hit) chosen.add(n.mac);
  }
  return nodes.filter((n) => chosen.has(n.mac));
}
