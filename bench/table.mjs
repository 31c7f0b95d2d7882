// Renders a bench/results JSON file as the Markdown table the README quotes. Usage: node bench/table.mjs FILE
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8'));
const m = r.machine;
const lines = [];
lines.push(`Run of ${r.date.slice(0, 10)} on ${m.cores} cores (${m.cpu}), Node ${m.node}, load average at start ${m.loadavgAtStart.join(' ')}${r.peer ? `; peer: ${r.peer.name} (${r.peer.config})` : ''}${r.target ? `; target ${r.target}` : ''}.`);
lines.push('');
lines.push('| scenario | mode | result | vs direct (same run) |');
lines.push('| --- | --- | --- | --- |');
for (const s of r.scenarios) {
  if (s.name === 'miss-ttfb') {
    lines.push(`| miss, origin sends chunks 200 ms apart | ${s.mode} | TTFB p50 ${s.ttfbMs.p50} ms, p99 ${s.ttfbMs.p99} ms; last byte p50 ${s.ttlbMs.p50} ms | ${s.mode === 'direct' ? 'baseline' : `TTFB +${s.ttfbDeltaVsDirectMs} ms at p50`} |`);
  } else if (s.name === 'load') {
    lines.push(`| 1 KiB hits under load (${s.connections} connections) | ${s.mode} | ${s.rps} req/s, p99 ${s.latencyMs.p99} ms; streamed-miss TTFB p50 ${s.ttfbMs.p50} ms meanwhile | |`);
  } else if (s.name === 'coalesce') {
    lines.push(`| ${s.clients} concurrent cold requests | ${s.mode} | ${s.originRequests} origin request(s), all complete: ${s.allComplete}, TTFB p50 ${s.ttfbMs.p50} ms | |`);
  } else if (s.name.startsWith('sweep-')) {
    lines.push(`| miss of a ${s.size} object (Content-Length) | ${s.mode} | last byte p50 ${s.ttlbMs.p50} ms | |`);
  } else if (s.name.startsWith('miss')) {
    lines.push(`| streamed miss, 5 chunks 200 ms apart | ${s.mode} | TTFB p50 ${s.ttfbMs.p50} ms, p90 ${s.ttfbMs.p90} ms; last byte p50 ${s.ttlbMs.p50} ms | ${s.mode === 'direct' ? 'baseline' : `TTFB +${s.ttfbDeltaVsDirectP50Ms} ms at p50`} |`);
  } else if (s.rps !== undefined) {
    const rounds = s.ratioRounds ? ` (rounds ${s.ratioRounds.join(', ')})` : '';
    lines.push(`| ${s.name.replace('hit-', 'hits, ')} object | ${s.mode} | ${s.rps} req/s, p99 ${s.latencyMs.p99} ms | ${s.ratioToDirect === undefined ? 'baseline' : `${s.ratioToDirect}${rounds}`} |`);
  } else if (s.name === 'range-on-miss') {
    lines.push(`| 1000 bytes at ${s.rangeStart / 1048576} MiB of a cold ${s.objectBytes / 1048576} MiB object | ${s.mode} | TTFB p50 ${s.ttfbMs.p50} ms; origin had sent ${(s.originBytesAtTtfb / 1048576).toFixed(1)} MiB by then | |`);
  } else if (s.name.startsWith('transit')) {
    lines.push(`| ${s.bodyBytes / 1048576} MiB uncacheable body, client reading at ~${s.clientMBps} MB/s | ${s.mode} | proxy RSS grew ${s.rssPeakGrowthMiB} MiB (goal < 64 MiB) | |`);
  } else if (s.name.startsWith('adaptive')) {
    lines.push(`| miss of a ${s.name.slice('adaptive-'.length)} object (Content-Length) | ${s.mode} | last byte p50 ${s.ttlbMs.p50} ms, p90 ${s.ttlbMs.p90} ms | |`);
  } else if (s.originRequests !== undefined) {
    lines.push(`| ${s.clients} concurrent cold requests | ${s.mode} | ${s.originRequests} origin request(s), all complete: ${s.allComplete}, TTFB p50 ${s.ttfbMs.p50} ms | |`);
  }
}
console.log(lines.join('\n'));
