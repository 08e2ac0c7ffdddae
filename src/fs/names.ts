// Label and UUID formatting shared by the filesystem parsers (pure).

/** Canonical 8-4-4-4-12 UUID text as blkid prints it; null for an all-zero UUID. */
export function formatUuid(bytes: Uint8Array): string | null {
  if (bytes.every((b) => b === 0)) return null;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A NUL-terminated (or NUL-padded) UTF-8 label; null when empty. */
export function decodeLabel(bytes: Uint8Array): string | null {
  const end = bytes.indexOf(0);
  const text = new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
  return text.length > 0 ? text : null;
}
