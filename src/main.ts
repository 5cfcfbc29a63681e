// Entry point: `node dist/main.js <command>`. Refuses an old Node before loading anything that needs a new
// one (slonik and pg-boss fail in confusing ways on Node 20), then hands over to the command line.
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_MAJOR) {
  console.error(
    `recorrencias needs Node.js ${REQUIRED_MAJOR} or newer; this is v${process.versions.node}.\n` +
      'Run it through npm (npm start, npm run <script>), which uses the Node 24 installed in node_modules,\n' +
      'or with node_modules/.bin/node dist/main.js <command>.',
  );
  // 2, as for bad configuration: the environment is wrong, and restarting will not mend it.
  process.exit(2);
}
const { main } = await import('./cli.ts');
// Exit explicitly once the command is done: a stray timer in a dependency must not keep a stopped role alive.
process.exit(await main(process.argv.slice(2)));
