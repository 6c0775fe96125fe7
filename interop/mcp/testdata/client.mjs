// An MCP client on the official TypeScript SDK, driven by interop/mcp's
// end-to-end test (cmd/parley/mcp_test.go): it connects to parley's MCP
// server over stdio (spawning `parley mcp`) or Streamable HTTP (the
// daemon's /mcp), lists the tools, calls request with a progress callback
// and the bad calls, and prints what it saw as one JSON line for the Go
// test to check.
//
//   node client.mjs stdio PARLEY_BIN HOME CAPABILITY [--no-bad-calls] [--workflow]
//   node client.mjs http URL TOKEN CAPABILITY [--no-bad-calls] [--workflow]
//
// --no-bad-calls leaves out the call nobody can win, which waits for the
// node's publish wait (2 s) to find no one. --workflow also runs a
// two-step workflow (CAPABILITY, then stock, which writes the shared
// context) to its end with the workflow tools, and their bad calls.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, a, b, capability, ...flags] = process.argv.slice(2);
const badCalls = !flags.includes("--no-bad-calls");
let transport;
if (mode === "stdio") {
  transport = new StdioClientTransport({ command: a, args: ["mcp", "--home", b], stderr: "inherit" });
} else if (mode === "http") {
  transport = new StreamableHTTPClientTransport(new URL(a), { requestInit: { headers: { Authorization: `Bearer ${b}` } } });
} else {
  console.error(`usage: node client.mjs stdio BIN HOME CAPABILITY | http URL TOKEN CAPABILITY`);
  process.exit(2);
}

const client = new Client({ name: "parley-interop-test", version: "1.0.0" });
await client.connect(transport);
const out = { server: client.getServerVersion(), protocol: transport.protocolVersion ?? null };

const { tools } = await client.listTools();
out.tools = tools.map((t) => ({ name: t.name, input: t.inputSchema?.type ?? null, output: t.outputSchema?.type ?? null }));

// The request a mesh agent wins, with progress.
const progress = [];
const res = await client.callTool(
  { name: "request", arguments: { capability, input: { sku: "bolt" }, bid_window: "300ms", timeout: "10s" } },
  undefined,
  { onprogress: (p) => progress.push(p), timeout: 30000 },
);
out.request = { isError: res.isError ?? false, structured: res.structuredContent ?? null, text: res.content?.map((c) => c.text).join("\n") };
out.progress = progress;

// A capability nobody offers: a tool error with the reason.
if (badCalls) {
  const none = await client.callTool({ name: "request", arguments: { capability: "nobody-offers-this", bid_window: "200ms", timeout: "2s", calls: 1 } });
  out.nobody = { isError: none.isError ?? false, text: none.content?.map((c) => c.text).join("\n") };
}

// A workflow to its end, with a progress notification per step change;
// then what the other workflow tools say of it, and their bad calls.
if (flags.includes("--workflow")) {
  const source = [
    "version: 1",
    "name: mcp-order",
    "steps:",
    `  quote: {capability: ${capability}, bid_window: 300ms, input: '{sku: $input.sku}'}`,
    "  stock: {capability: stock, bid_window: 300ms, needs: [quote], context: {writes: [stock.*]}}",
    "output: '{quote: $steps.quote.output.quote}'",
    "",
  ].join("\n");
  const wprogress = [];
  const run = await client.callTool(
    { name: "run_workflow", arguments: { file: "order.yaml", source, input: { sku: "bolt" }, wait: true } },
    undefined,
    { onprogress: (p) => wprogress.push(p), timeout: 30000 },
  );
  const result = (r) => ({ isError: r.isError ?? false, structured: r.structuredContent ?? null, text: r.content?.map((c) => c.text).join("\n") });
  out.runWorkflow = { ...result(run), progress: wprogress };
  const id = run.structuredContent?.id ?? "";
  out.workflow = result(await client.callTool({ name: "workflow", arguments: { workflow: id } }));
  out.workflows = result(await client.callTool({ name: "workflows", arguments: { limit: 5 } }));
  out.badWorkflow = result(await client.callTool({
    name: "run_workflow",
    arguments: { file: "bad.yaml", source: `version: 1\nsteps:\n  a: {capability: ${capability}, needs: [b]}\n` },
  }));
  out.cancelEnded = result(await client.callTool({ name: "cancel_workflow", arguments: { workflow: id } }));
}

// An unknown tool: a protocol error.
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknownTool = null;
} catch (e) {
  out.unknownTool = { code: e.code ?? null, message: String(e.message) };
}

await client.close();
console.log(JSON.stringify(out));
