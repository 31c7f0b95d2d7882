import { describe, expect, it } from 'vitest';
import type { TxView } from '@sluice/core';
import { formatRaw, matchesQuery, parseLogQuery, QuerySyntaxError } from './log-query.js';

const tx = (vxid: number, type: string, records: Array<[string, string]>, children: TxView[] = []): TxView => ({
  vxid,
  type,
  records: records.map(([tag, value]) => ({ tag, value })),
  children,
});

const bereq = tx(3, 'BeReq', [['Begin', 'bereq 2 fetch'], ['BerespStatus', '503'], ['Timestamp', 'Beresp: 1795295118.376940 0.014755 0.014583']]);
const group = tx(2, 'Request', [
  ['Begin', 'req 1 rxreq'],
  ['ReqMethod', 'GET'],
  ['ReqURL', '/x/index.html'],
  ['ReqHeader', 'Host: a'],
  ['ReqHeader', 'User-Agent: curl/8'],
  ['RespStatus', '503'],
  ['Timestamp', 'Resp: 1795295118.377 0.020 0.001'],
], [bereq]);

describe('sluice log -q (vsl-query)', () => {
  it.each([
    ['ReqURL', true],
    ['ReqURL ~ "^/x"', true],
    ['ReqURL ~ "^/y"', false],
    ['ReqURL !~ "^/y"', true],
    ['RespStatus >= 500', true],
    ['RespStatus < 500', false],
    ['RespStatus == 503', true],
    ['RespStatus != 503', false],
    ['ReqHeader:Host eq "a"', true],
    ['ReqHeader:host eq a', true],
    ['ReqHeader:Host ne "a"', false],
    ['ReqHeader:Cookie', false],
    ['ReqURL ~ "^/x" and RespStatus >= 500', true],
    ['ReqURL ~ "^/y" or RespStatus >= 500', true],
    ['not ReqHeader:Cookie and ReqMethod eq GET', true],
    ['ReqMethod eq POST or (ReqURL ~ html and not RespStatus == 200)', true],
    ['(ReqMethod eq POST or ReqURL ~ html) and RespStatus == 200', false],
    ['{1}BerespStatus', false],
    ['{2}BerespStatus == 503', true],
    ['{2+}Begin ~ fetch', true],
    ['{1-}Begin ~ fetch', false],
    ['Beresp*', true],
    ['ReqURL,BerespStatus == 503', true],
    ['Timestamp:Resp[2] > 0.01', true],
    ['Timestamp:Resp[2] > 0.5', false],
    ['vxid == 3', true],
    ['vxid == 9', false],
    ['ReqHeader:User-Agent ~ "^curl/"', true],
  ])('%s -> %s', (q, want) => {
    expect(matchesQuery(parseLogQuery(q), group)).toBe(want);
  });

  it.each([
    ['', /empty query/],
    ['RespStatus >=', /needs an operand/],
    ['RespStatus >= x', /compares numbers/],
    ['(ReqURL', /missing "\)"/],
    ['ReqURL ~ "("', /not a regular expression/],
    ['ReqURL and', /ends where a test was expected/],
    ['ReqURL ReqMethod', /unexpected "ReqMethod"/],
    ['Tag[0]', /fields count from 1/],
  ])('refuses %j', (q, why) => {
    expect(() => parseLogQuery(q)).toThrow(QuerySyntaxError);
    expect(() => parseLogQuery(q)).toThrow(why);
  });

  it('-g raw: %10u %-14s %c %s per record, b for a backend transaction, c for a client one', () => {
    expect(formatRaw(bereq).split('\n')[0]).toBe('         3 Begin          b bereq 2 fetch');
    expect(formatRaw(tx(2, 'Request', [['ReqURL', '/x']]))).toBe('         2 ReqURL         c /x\n');
  });
});
