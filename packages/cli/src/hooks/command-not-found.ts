import path from 'node:path';
import type { Hook } from '@oclif/core';
import { invocation } from '../invocation.js';
import { unknownCommand } from '../suggest.js';

/**
 * `sluice prxy`: suggests the closest command instead of oclif's bare "command prxy not found"; exit 2. With the space
 * topic separator oclif joins the words that follow into the id (`replya x.log` -> `replya:x.log`): the first is the name.
 */
const hook: Hook<'command_not_found'> = async function (opts) {
  throw unknownCommand(opts.id.split(':')[0] ?? opts.id, opts.config.commandIDs, invocation(path.join(opts.config.root, 'bin', 'run.js')));
};

export default hook;
