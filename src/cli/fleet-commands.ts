// yargs definitions of the fleet commands (src/cli/fleet.ts does the work). `discus server`
// itself is registered in cli.ts: it starts the HTTP face, which this layer may not import.
import type { Argv } from "yargs";
import type { NodeStatus, StatusView } from "../daemon/api-types.ts";
import type { EventRecord, ImageRecord, JobRecord, NodeRecord } from "../daemon/model.ts";
import { call, connection, formatEvents, formatImages, formatJobs, formatNode, formatNodes, formatStatus, nodeInput, parsePower, readCsv, type Connection } from "./fleet.ts";

type Out = (json: boolean, value: unknown, text: string) => void;

/** The connection options every fleet command takes (withServer below); yargs' types lose them in nested builders. */
function conn(a: object): Connection {
  const o = a as { server?: string; token?: string; state?: string };
  return connection({ server: o.server, token: o.token, state: o.state });
}

const enc = encodeURIComponent;

function nodeCommands(y: Argv, print: Out): Argv {
  return y
    .command(
      "add <name>",
      "Add a node to the inventory",
      (y) =>
        y
          .positional("name", { type: "string", demandOption: true })
          .option("mac", { type: "string", demandOption: true, describe: "The MAC it PXE-boots with" })
          .option("disk", { type: "string", describe: "Disk rule, e.g. serial:S3Z9NB0K (no rule: never written)" })
          .option("image", { type: "string", describe: "Catalog image its reloads write by default" })
          .option("tag", { type: "string", array: true, describe: "Tags (repeatable)" })
          .option("power", { type: "string", default: "none", describe: "none, command:PROGRAM, ipmi:HOST:USER:PASSWORD-FILE, or redfish:HOST[:PORT]:USER:PASSWORD-FILE[,ca=PEM-FILE|,insecure][,system=ID]" }),
      async (a) => {
        const n = await call<NodeRecord>(conn(a), "POST", "/api/nodes", nodeInput(a.name, a));
        print(a.json === true, n, `added ${n.name} (${n.mac})`);
      },
    )
    .command(
      "set <node>",
      "Change a node's disk rule, image, tags or power",
      (y) =>
        y
          .positional("node", { type: "string", demandOption: true })
          .option("disk", { type: "string" })
          .option("image", { type: "string" })
          .option("tag", { type: "string", array: true })
          .option("power", { type: "string" }),
      async (a) => {
        const change: Record<string, unknown> = {};
        if (a.disk !== undefined) change.diskRule = a.disk;
        if (a.image !== undefined) change.image = a.image;
        if (a.tag !== undefined) change.tags = a.tag;
        if (a.power !== undefined) change.power = parsePower(a.power);
        const n = await call<NodeRecord>(conn(a), "PATCH", `/api/nodes/${enc(a.node)}`, change);
        print(a.json === true, n, `changed ${n.name}`);
      },
    )
    .command("list", "List the nodes", {}, async (a) => {
      const rows = await call<NodeStatus[]>(conn(a), "GET", "/api/nodes");
      print(a.json === true, rows, formatNodes(rows));
    })
    .command("show <node>", "Show one node, its hardware and job", (y) => y.positional("node", { type: "string", demandOption: true }), async (a) => {
      const s = await call<NodeStatus>(conn(a), "GET", `/api/nodes/${enc(a.node)}`);
      print(a.json === true, s, formatNode(s));
    })
    .command("rm <node>", "Remove a node", (y) => y.positional("node", { type: "string", demandOption: true }), async (a) => {
      await call<unknown>(conn(a), "DELETE", `/api/nodes/${enc(a.node)}`);
      print(a.json === true, { removed: a.node }, `removed ${a.node}`);
    })
    .command("import <csv>", "Add nodes from a CSV file (header: name,mac,disk,image,tags,power)", (y) => y.positional("csv", { type: "string", demandOption: true }), async (a) => {
      const added = await call<NodeRecord[]>(conn(a), "POST", "/api/nodes/import", readCsv(a.csv), "text/csv");
      print(a.json === true, added, `added ${added.length} nodes`);
    })
    .demandCommand(1, "Name a node command: add, set, list, show, rm, import");
}

export function fleetCommands(y: Argv, print: Out): Argv {
  const withServer = (y: Argv) =>
    y
      .option("server", { type: "string", describe: "The daemon's URL (default: from --state)" })
      .option("token", { type: "string", describe: "Admin token (default: DISCUS_TOKEN, or the state directory's token file)" })
      .option("state", { type: "string", describe: "State directory of a daemon on this machine (default /var/lib/discus)" });
  return y
    .command("node", "Manage the node inventory (needs `discus server`)", (y) => nodeCommands(withServer(y), print))
    .command("image", "The daemon's image catalog", (y) =>
      withServer(y)
        .command("list", "List the catalog", {}, async (a) => {
          const images = await call<ImageRecord[]>(conn(a), "GET", "/api/images");
          print(a.json === true, images, formatImages(images));
        })
        .command("rescan", "Re-read the images directory", {}, async (a) => {
          const images = await call<ImageRecord[]>(conn(a), "POST", "/api/images/rescan");
          print(a.json === true, images, formatImages(images));
        })
        .demandCommand(1, "Name an image command: list, rescan"),
    )
    .command(
      "reload <nodes..>",
      "Reload nodes (names, MACs, tag:TAG, globs): mark them and power-cycle them",
      (y) => withServer(y).positional("nodes", { type: "string", array: true, demandOption: true }).option("image", { type: "string", describe: "Catalog image (default: each node's own)" }),
      async (a) => {
        const jobs = await call<JobRecord[]>(conn(a), "POST", "/api/reload", { selectors: a.nodes, image: a.image ?? null });
        print(a.json === true, jobs, formatJobs(jobs));
      },
    )
    .command(
      "inventory <nodes..>",
      "Collect nodes' hardware again (disks, NICs, CPU, memory): power-cycle them into the agent, which writes nothing",
      (y) => withServer(y).positional("nodes", { type: "string", array: true, demandOption: true }),
      async (a) => {
        const jobs = await call<JobRecord[]>(conn(a), "POST", "/api/inventory", { selectors: a.nodes });
        print(a.json === true, jobs, formatJobs(jobs));
      },
    )
    .command("cancel <nodes..>", "Cancel reloads that have not begun to write", (y) => withServer(y).positional("nodes", { type: "string", array: true, demandOption: true }), async (a) => {
      const jobs = await call<JobRecord[]>(conn(a), "POST", "/api/cancel", { selectors: a.nodes });
      print(a.json === true, jobs, jobs.length === 0 ? "nothing to cancel" : formatJobs(jobs));
    })
    .command("status", "Every node, its state and job, and the sessions being served", (y) => withServer(y), async (a) => {
      const v = await call<StatusView>(conn(a), "GET", "/api/status");
      print(a.json === true, v, formatStatus(v));
    })
    .command("job", "Reload jobs", (y) =>
      withServer(y)
        .command("show <id>", "Show one job", (y) => y.positional("id", { type: "string", demandOption: true }), async (a) => {
          const j = await call<JobRecord>(conn(a), "GET", `/api/jobs/${enc(a.id)}`);
          print(a.json === true, j, formatJobs([j]));
        })
        .demandCommand(1, "Name a job command: show"),
    )
    .command("events", "The audit log, newest first", (y) => withServer(y).option("limit", { type: "number", default: 50 }), async (a) => {
      const events = await call<EventRecord[]>(conn(a), "GET", `/api/events?limit=${a.limit}`);
      print(a.json === true, events, formatEvents(events));
    });
}
