// One BullMQ worker process on Node.js with node-postgres: the request's original stack.
// Each job's data is a GridLens stream entry (gridlens/entry.py: meters as a list or as
// first/step/count, kWh in 0.0001 kWh and volts in 0.1 V as integers); it is
// inserted by the same statement as GridLens's consumer (sql/queries.sql, insert_reads, with
// $1..$7 placeholders). Prints "ready" when connected; SIGTERM (or stdin closing) stops it.
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

// Meter sets already registered in tenant_meters, as GridLens's consumer keeps them.
const registered = new Set();

async function insertBatch(job) {
  const { tenantId, feederId, readAt, intervalMinutes, meters, kwh, voltage } = job.data;
  const meterIds = meterNumbers(meters).map((number) => meterId(tenantId, number));
  const meterSet = `${tenantId}:${meterIds[0]}:${meterIds.length}:${meterIds.at(-1)}`;
  const result = await pool.query(config.sql, [
    tenantId,
    meterIds,
    feederId,
    new Date(readAt * 1000),
    intervalMinutes,
    kwh.map((value) => value / KWH_SCALE),
    voltage.map((value) => value / VOLTAGE_SCALE),
    !registered.has(meterSet),
  ]);
  registered.add(meterSet);
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
