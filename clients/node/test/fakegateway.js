"use strict";
// Scripted fake gateways for the tests: @grpc/grpc-js servers in this
// process on 127.0.0.1 ports the kernel picks.

const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { pb } = h;

// script(n, request, call) drives Subscribe call n: it writes messages and
// returns "end" (finish OK), "hold" (keep the stream open until the client
// goes away) or a grpc error object.
async function startGateway(t, script) {
  const requests = [];
  const reports = []; // { at: Date.now(), req }
  const server = new grpc.Server();
  const g0 = { reportCode: undefined }; // Report answers with this code when set
  server.addService(pb.ConfigServiceService, {
    report(call, cb) {
      reports.push({ at: Date.now(), req: call.request });
      if (g0.reportCode !== undefined) cb({ code: g0.reportCode, details: "no fleet view here" });
      else cb(null, {});
    },
    subscribe(call) {
      const n = requests.length;
      requests.push(call.request);
      const outcome = script(n, call.request, call);
      if (outcome === "end") call.end();
      else if (outcome && outcome !== "hold") call.emit("error", outcome);
    },
    getSnapshot: (call) => call.emit("error", { code: grpc.status.UNIMPLEMENTED }),
    get: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    put: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    delete: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const g = Object.assign(g0, {
    addr: `127.0.0.1:${port}`,
    requests,
    reports,
    lastReport: () => reports[reports.length - 1]?.req,
    stop: () => server.forceShutdown(),
    request: async (n) => {
      await h.eventually(`Subscribe call ${n}`, () => requests.length > n, 5000);
      return requests[n];
    },
  });
  t.after(g.stop);
  return g;
}

const send = (call, msgs) => msgs.forEach((m) => call.write(m));

// A gateway whose open streams the test writes to: calls[n] is Subscribe
// call n; first(n) gives the messages sent at once.
async function feedGateway(t, first = () => []) {
  const calls = [];
  const g = await startGateway(t, (n, req, call) => {
    calls[n] = call;
    send(call, first(n));
    return "hold";
  });
  g.calls = calls;
  g.stream = async (n) => {
    await h.eventually(`Subscribe call ${n}`, () => calls[n] !== undefined, 5000);
    return calls[n];
  };
  return g;
}

module.exports = { startGateway, feedGateway, send };
