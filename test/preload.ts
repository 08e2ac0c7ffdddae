// Loaded before every test file (bunfig.toml): once all tests have run, the temporary
// directories they made with tmpDir are removed, whether each file cleaned up after itself or not.
import { afterAll } from "bun:test";
import { removeTmpDirs } from "./helpers.ts";

afterAll(removeTmpDirs);
