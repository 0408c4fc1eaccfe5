#!/usr/bin/env node
// Calls a remo server from Node.js: mutual TLS from a remo credential file, then a few
// remo.v1.JobService calls. Plain JavaScript, no build step:
//
//   npm ci
//   node remo-example.js ~/.config/remo/me.remo      (or REMO_CREDENTIAL=FILE node remo-example.js)
//
// Prints one line per step and exits 0 when every step did what it should.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const MAGIC = 'remo-credential v1';
const DEADLINE_MS = 30000;

// ---------------------------------------------------------------------------------------
// The credential file (format: src/remo/pki/package.py): the line "remo-credential v1",
// header lines "name: value" ("address" may repeat; '#' lines are comments), then PEM
// blocks: the CA certificate, the client certificate, the private key. As remo's own
// parser does, the CA is the certificate with basicConstraints CA:TRUE, whatever its
// position, and the key is the block whose label ends in "PRIVATE KEY".

function readCredential(file) {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/);
  if (lines[0].trim() !== MAGIC) {
    throw new Error(`${file} is not a remo credential file (it must start with '${MAGIC}')`);
  }
  const addresses = [];
  const blocks = []; // {label, pem}
  let label = null;
  let body = [];
  for (const raw of lines.slice(1)) {
    const line = raw.trim();
    if (label === null) {
      const begin = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(line);
      if (begin) {
        label = begin[1];
        body = [line];
      } else if (line && !line.startsWith('#') && blocks.length === 0) {
        const sep = line.indexOf(':');
        if (sep > 0 && line.slice(0, sep).trim().toLowerCase() === 'address') {
          addresses.push(line.slice(sep + 1).trim());
        }
      }
      continue;
    }
    body.push(line);
    if (line === `-----END ${label}-----`) {
      blocks.push({ label, pem: Buffer.from(body.join('\n') + '\n') });
      label = null;
    }
  }
  if (label !== null) throw new Error(`${file} is truncated (the ${label} block has no end)`);

  let ca = null;
  let cert = null;
  let key = null;
  for (const block of blocks) {
    if (block.label === 'CERTIFICATE') {
      if (new crypto.X509Certificate(block.pem).ca) ca = block.pem;
      else cert = block.pem;
    } else if (block.label.endsWith('PRIVATE KEY')) {
      key = block.pem;
    }
  }
  const missing = Object.entries({ 'server address': addresses.length, 'CA certificate': ca,
    'client certificate': cert, 'private key': key }).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length) throw new Error(`${file} is incomplete: no ${missing.join(', no ')}`);
  return { addresses, ca, cert, key };
}

// ---------------------------------------------------------------------------------------
// Errors: the grpc-status-details-bin trailer is a google.rpc.Status whose details are
// google.protobuf.Any messages: an ErrorInfo (domain "remo", reason) and, for bad input,
// a BadRequest. The three messages, as in googleapis' google/rpc/*.proto (field numbers
// are what matters on the wire), so no extra .proto files are needed.

const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            BadRequest: {
              fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: {
                FieldViolation: {
                  fields: { field: { type: 'string', id: 1 }, description: { type: 'string', id: 2 } },
                },
              },
            },
          },
        },
      },
    },
  },
});
const RpcStatus = rpcTypes.lookupType('google.rpc.Status');
const ErrorInfo = rpcTypes.lookupType('google.rpc.ErrorInfo');
const BadRequest = rpcTypes.lookupType('google.rpc.BadRequest');

const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

function describeError(err) {
  const out = { code: STATUS_NAMES[err.code] || String(err.code), message: err.details, reason: '',
    domain: '', metadata: {}, fields: [] };
  const [raw] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw) return out;
  const status = RpcStatus.decode(raw);
  for (const any of status.details) {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    if (type === 'google.rpc.ErrorInfo') {
      const info = ErrorInfo.decode(any.value);
      Object.assign(out, { reason: info.reason, domain: info.domain, metadata: info.metadata });
    } else if (type === 'google.rpc.BadRequest') {
      for (const v of BadRequest.decode(any.value).field_violations) out.fields.push(v.field);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + DEADLINE_MS }, (err, response) =>
      err ? reject(err) : resolve(response));
  });
}

function readOutput(client, id) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const stream = client.Output({ id, offset: 0, follow: true },
      { deadline: Date.now() + DEADLINE_MS });
    stream.on('data', (msg) => chunks.push(msg.data));
    stream.on('error', reject);
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

function fail(why) {
  console.error(`FAILED: ${why}`);
  process.exit(1);
}

async function main() {
  const file = process.argv[2] || process.env.REMO_CREDENTIAL;
  if (!file) fail('usage: node remo-example.js CREDENTIAL_FILE (or set REMO_CREDENTIAL)');
  const cred = readCredential(file);
  const address = cred.addresses[0];

  // keepCase: the proto's field names (exit_code, not exitCode). The well-known types
  // (google/protobuf/duration.proto, timestamp.proto) come with protobufjs, which
  // proto-loader uses, so the only include dir needed is the repository's proto/.
  const definition = protoLoader.loadSync('remo/v1/jobs.proto', {
    includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true,
    oneofs: true,
  });
  const remo = grpc.loadPackageDefinition(definition).remo.v1;

  // The server certificate names the credential's addresses (and 127.0.0.1, localhost),
  // so the address itself is the name TLS verifies.
  const tls = grpc.credentials.createSsl(cred.ca, cred.key, cred.cert);
  const client = new remo.JobService(address, tls);

  const me = await call(client, 'WhoAmI', {});
  console.log(`connected: ${address} as ${me.user} (${me.role}), server ${me.server_version}`);

  const started = (await call(client, 'Start', {
    argv: ['sh', '-c', 'echo hello from node; echo done'],
  })).job;
  console.log(`started: job ${started.id} ${JSON.stringify(started.argv)} ${started.state}`);

  const output = await readOutput(client, started.id);
  process.stdout.write(`output: ${output.toString('utf8').trimEnd().split('\n').join(' | ')}\n`);
  if (!output.toString().includes('hello from node')) fail('the output lacks "hello from node"');

  const job = (await call(client, 'GetJob', { id: started.id })).job;
  console.log(`job ${job.id}: ${job.state} exit_code=${job.exit_code}`);
  if (job.state !== 'JOB_STATE_SUCCEEDED' || job.exit_code !== 0) fail('the job did not succeed');

  const sleeper = (await call(client, 'Start', { argv: ['sleep', '60'] })).job;
  console.log(`started: job ${sleeper.id} ${JSON.stringify(sleeper.argv)} ${sleeper.state}`);
  const stopped = (await call(client, 'Stop', { id: sleeper.id, grace: { seconds: 1 } })).job;
  console.log(`stopped: job ${stopped.id} ${stopped.state} signal=${stopped.signal}`);
  if (stopped.state !== 'JOB_STATE_STOPPED') fail('the job was not stopped');

  try {
    await call(client, 'GetJob', { id: '999999' });
    fail('GetJob 999999 succeeded');
  } catch (err) {
    if (err.code === undefined) throw err;
    const e = describeError(err);
    const fields = e.fields.length ? ` fields=${e.fields.join(',')}` : '';
    console.log(`error: GetJob 999999: ${e.code} (${err.code}) "${e.message}" ` +
      `reason=${e.reason} domain=${e.domain}${fields}`);
    if (err.code !== grpc.status.NOT_FOUND || e.reason !== 'JOB_NOT_FOUND') {
      fail('expected NOT_FOUND / JOB_NOT_FOUND');
    }
  }
  client.close();
  console.log('ok');
}

main().catch((err) => {
  if (err.code !== undefined && err.metadata) {
    const e = describeError(err);
    fail(`${e.code}: ${e.message}${e.reason ? ` (${e.reason})` : ''}`);
  }
  fail(err.message || String(err));
});
