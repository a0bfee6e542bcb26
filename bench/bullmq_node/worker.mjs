// One BullMQ worker process on Node.js with node-postgres: the request's original stack.
// Each job's data is a GridLens stream entry (gridlens/entry.py: meters as a list or as
// first/step/count, kWh in 0.0001 kWh and volts in 0.1 V as integers); it is
// inserted by the same statement as GridLens's consumer (sql/queries.sql, insert_reads, with
// $1..$8 placeholders). Prints "ready" when connected; SIGTERM (or stdin closing) stops it.
import { createHash } from 'node:crypto';

import { Worker } from 'bullmq';
import pg from 'pg';

import { config, connection, exitWithParent } from './config.mjs';

const pool = new pg.Pool({ ...config.pg, max: config.concurrency });

const KWH_SCALE = 10000;
const VOLTAGE_SCALE = 10;

function meterId(tenantId, number) {
  return `${tenantId}-MTR-${String(number).padStart(5, '0')}`;
}

function meterNumbers(meters) {
  if (Array.isArray(meters)) return meters;
  return Array.from({ length: meters.count }, (_, i) => meters.first + i * meters.step);
}

// The key of tenant_meter_sets, as consumer/ingest.py computes it: the first 16 bytes of
// the SHA-256 of the meter numbers as 64-bit little-endian integers, as a UUID.
function meterSet(numbers) {
  const bytes = Buffer.from(BigInt64Array.from(numbers, BigInt).buffer);
  const hex = createHash('sha256').update(bytes).digest('hex').slice(0, 32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

async function insertBatch(job) {
  const { tenantId, feederId, readAt, intervalMinutes, meters, kwh, voltage } = job.data;
  const numbers = meterNumbers(meters);
  const meterIds = numbers.map((number) => meterId(tenantId, number));
  const result = await pool.query(config.sql, [
    tenantId,
    meterIds,
    feederId,
    new Date(readAt * 1000),
    intervalMinutes,
    kwh.map((value) => value / KWH_SCALE),
    voltage.map((value) => value / VOLTAGE_SCALE),
    meterSet(numbers),
  ]);
  return Number(result.rows[0].count);
}

const worker = new Worker(config.queue, insertBatch, {
  connection,
  prefix: config.prefix,
  concurrency: config.concurrency,
});
worker.on('failed', (job, error) => console.error(`job ${job?.id} failed: ${error.message}`));
worker.on('error', (error) => console.error(`worker error: ${error.message}`));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await worker.close();
  await pool.end();
}

process.on('SIGTERM', () => stop().finally(() => process.exit(0)));
exitWithParent(stop);

await worker.waitUntilReady();
const client = await pool.connect();
client.release();
process.stdout.write('ready\n');
