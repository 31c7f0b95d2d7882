import path from 'node:path';
import { Args, Command, loadHelpClass } from '@oclif/core';
import { invocation } from '../invocation.js';
import { unknownCommand } from '../suggest.js';

export default class HelpCommand extends Command {
  static override summary = 'Show help for sluice, or for one command.';
  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help proxy'];
  static override args = { command: Args.string({ description: 'Command to show help for.' }) };
  static override strict = false;

  async run(): Promise<void> {
    const { argv } = await this.parse(HelpCommand);
    const words = argv as string[];
    // `help backend set-health` names the command `backend:set-health`; `help backend` the topic.
    const named = words.filter((w) => !w.startsWith('-'));
    const id = named.join(':');
    if (id !== '' && this.config.findCommand(id) === undefined && this.config.findTopic(id) === undefined) {
      throw unknownCommand(named.join(' '), this.config.commandIDs, invocation(path.join(this.config.root, 'bin', 'run.js')));
    }
    const Help = await loadHelpClass(this.config);
    await new Help(this.config, this.config.pjson.oclif.helpOptions ?? {}).showHelp(words);
  }
}
