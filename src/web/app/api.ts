// The page's calls to the API: same origin, the login cookie, and the header that tells the
// server a change comes from this page (see src/http/api.ts, checkAccess). Errors come back as
// the server's own message.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const CALL_TIMEOUT_MS = 15_000;

export async function call<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { "x-discus-request": "1" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const message = parsed !== null && typeof parsed === "object" && "error" in parsed ? String((parsed as { error: unknown }).error) : `HTTP ${res.status}`;
    throw new ApiError(res.status, message);
  }
  return parsed as T;
}
