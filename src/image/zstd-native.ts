// zstd decompression into a buffer the caller owns, through the system's libzstd (bun:ffi).
// node:zlib hands back a fresh buffer per chunk: up to 32 MiB that the allocator maps, the kernel
// faults in and zeroes page by page, and the allocator gives back soon after, for every chunk a
// client applies (17 % of a load's CPU in page faults, measured with perf). Decoding into one
// reused buffer per thread costs none of that. One-shot decoding: the whole output is in `out`,
// so the frame's window needs no memory of its own.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { DiscusError } from "../util/errors.ts";

/** Debian's libzstd1 (required by apt and dpkg, so on every Debian system). */
const LIBRARY = "libzstd.so.1";

function openLibrary() {
  try {
    return dlopen(LIBRARY, {
      ZSTD_createDCtx: { args: [], returns: FFIType.ptr },
      ZSTD_decompressDCtx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64], returns: FFIType.u64_fast },
      ZSTD_isError: { args: [FFIType.u64_fast], returns: FFIType.u32 },
      ZSTD_getErrorName: { args: [FFIType.u64_fast], returns: FFIType.cstring },
    }).symbols;
  } catch (e) {
    throw new DiscusError("io", LIBRARY, `it cannot be loaded (${(e as Error).message})`, "Install the zstd library: apt-get install libzstd1");
  }
}

type Library = ReturnType<typeof openLibrary>;
let library: Library | null = null;
/** One decompression context per thread (each worker loads this module anew). */
let context: ReturnType<Library["ZSTD_createDCtx"]> = null;

/** The frame's error, or null; `out` then holds exactly the returned number of bytes. */
export function zstdDecompressInto(payload: Uint8Array, out: Uint8Array): { bytes: number } | { error: string } {
  library ??= openLibrary();
  context ??= library.ZSTD_createDCtx();
  if (context === null) throw new DiscusError("io", LIBRARY, "it could not make a decompression context (out of memory)", "Free memory, or run fewer workers (--workers)");
  if (payload.length === 0 || out.length === 0) return { error: "empty payload or output" };
  const n = library.ZSTD_decompressDCtx(context, ptr(out), out.length, ptr(payload), payload.length);
  if (library.ZSTD_isError(n) !== 0) return { error: library.ZSTD_getErrorName(n)?.toString() ?? `zstd error ${n}` };
  return { bytes: Number(n) };
}
