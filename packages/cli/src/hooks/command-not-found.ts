import path from 'node:path';
import type { Hook } from '@oclif/core';
import { invocation } from '../invocation.js';
import { unknownCommand } from '../suggest.js';

/**
 * `sluice prxy`: suggests the closest command instead of oclif's bare "command prxy not found"; exit 2. With the space
 * topic separator oclif joins the words that follow into the id (`replya x.log` -> `replya:x.log`): the first is the name,
 * or the first two under a topic (`backend lst`).
 */
const hook: Hook<'command_not_found'> = async function (opts) {
  const words = opts.id.split(':');
  // Under a topic (`backend lst`) the name is two words.
  const name = opts.config.findTopic(words[0] ?? '') !== undefined && words.length > 1 ? words.slice(0, 2).join(' ') : (words[0] ?? opts.id);
  throw unknownCommand(name, opts.config.commandIDs, invocation(path.join(opts.config.root, 'bin', 'run.js')));
};

export default hook;
