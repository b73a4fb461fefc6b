// lifecycle.mjs: how the test servers of test/js (idp.mjs, embed.mjs) listen
// and stop, written once. Test use only.

// listen binds server to 127.0.0.1:port (0: a free port), with a short
// keep-alive, and resolves to the port bound; it calls fail (which exits)
// when it cannot bind.
export async function listen(server, port, fail) {
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err) => fail(`listen on 127.0.0.1:${port}: ${err.message}`));
  return server.address().port;
}

// stopOn makes SIGTERM and SIGINT (and, with exitOnStdinClose, standard input
// reaching EOF, so that a dying parent holding the pipe cannot leave the
// server running) stop server and exit 0, after at most 2 s.
export function stopOn(server, log, exitOnStdinClose) {
  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (exitOnStdinClose) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }
}
