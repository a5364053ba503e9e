// A domain's own xenstore connection: the per-domain socket the toolstack introduced it on.
import { XenstoreClient } from '../xenstore/client.js';

export async function connectXenstore(path: string, log: (l: string) => void): Promise<XenstoreClient> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      return await XenstoreClient.connect(path, { onError: (e) => log(`xenstore: ${e.message}`) });
    } catch (e) {
      if (Date.now() > end) throw new Error(`cannot connect to xenstore at ${path}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
