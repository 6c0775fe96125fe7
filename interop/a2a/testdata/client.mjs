// The JS A2A SDK (@a2a-js/sdk) as a client of parley's A2A gateway, over
// JSON-RPC: run by interop/a2a's TestGatewayWithJSClient, which checks what
// this prints (one JSON object per line). A2A_URL is the gateway's base
// URL, A2A_TOKEN its bearer token.
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } from "@a2a-js/sdk/client";
import { Role, taskStateToJSON } from "@a2a-js/sdk";

const base = process.env.A2A_URL;
const token = process.env.A2A_TOKEN;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const auth = { serviceParameters: { Authorization: `Bearer ${token}` } };

const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
  transports: [new JsonRpcTransportFactory()],
  preferredTransports: ["JSONRPC"],
}));
const client = await factory.createFromUrl(base);
const card = await client.getAgentCard();
out({ card: { name: card.name, skills: card.skills.map((s) => s.id), interfaces: card.supportedInterfaces.map((i) => i.protocolBinding), schemes: Object.keys(card.securitySchemes ?? {}) } });

const message = (skill, data) => ({
  message: {
    messageId: crypto.randomUUID(), role: Role.ROLE_USER, contextId: "", taskId: "", extensions: [], referenceTaskIds: [],
    parts: [{ content: { $case: "data", value: data }, metadata: undefined, filename: "", mediaType: "application/json" }],
    metadata: { skill, bid_window: "200ms" },
  },
  tenant: "", configuration: undefined, metadata: undefined,
});

// Without the token: A2A's unauthenticated error.
try {
  await client.sendMessage(message("quote", { kg: 1 }));
  out({ unauthenticated: "no error" });
} catch (e) {
  out({ unauthenticated: { name: e.constructor.name, code: e.envelopeCode ?? null, message: String(e.message) } });
}

// A task a mesh agent wins and completes, streamed.
const events = [];
let task = "";
for await (const ev of client.sendMessageStream(message("quote", { kg: 2 }), auth)) {
  const p = ev.payload;
  if (!p) continue;
  if (p.$case === "task") {
    task = p.value.id;
    events.push({ kind: "task", state: taskStateToJSON(p.value.status.state) });
  } else if (p.$case === "statusUpdate") {
    const parts = p.value.status.message?.parts ?? [];
    events.push({ kind: "status", state: taskStateToJSON(p.value.status.state), text: parts[0]?.content?.value ?? "" });
  } else if (p.$case === "artifactUpdate") {
    events.push({ kind: "artifact", data: p.value.artifact.parts[0]?.content?.value });
  }
}
out({ stream: events, task });
const got = await client.getTask({ id: task, tenant: "", historyLength: undefined }, auth);
out({ getTask: taskStateToJSON(got.status.state) });

// A second task, canceled while its contractor works.
const slow = message("slow", {});
slow.configuration = { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: true };
const res = await client.sendMessage(slow, auth);
const slowTask = res.id; // a Task: sendMessage unwraps the response
// The gateway's test tells us when the contractor has started, on stdin.
await new Promise((resolve) => process.stdin.once("data", resolve));
const canceled = await client.cancelTask({ id: slowTask, tenant: "", metadata: undefined }, auth);
out({ cancel: taskStateToJSON(canceled.status.state), task: slowTask });

// A task whose winner asks: the stream ends in input-required with the
// question; a follow-up message on the task (A2A's way) answers it.
let asked = null;
for await (const ev of client.sendMessageStream(message("size", { item: "shirt" }), auth)) {
  const p = ev.payload;
  if (p?.$case === "task") asked = { task: p.value.id, contextId: p.value.contextId };
  if (p?.$case === "statusUpdate") {
    asked.state = taskStateToJSON(p.value.status.state);
    asked.text = p.value.status.message?.parts?.[0]?.content?.value ?? "";
  }
}
out({ inputRequired: asked });
const answer = message("size", {});
answer.message.taskId = asked.task;
answer.message.contextId = asked.contextId;
answer.message.parts = [{ content: { $case: "text", value: "M" }, metadata: undefined, filename: "", mediaType: "text/plain" }];
const done = await client.sendMessage(answer, auth);
out({ answered: { state: taskStateToJSON(done.status.state), data: done.artifacts?.[0]?.parts?.[0]?.content?.value ?? null } });
process.exit(0);
