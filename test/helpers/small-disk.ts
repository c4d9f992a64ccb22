import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real disk that fills up: a tmpfs of `size` mounted on a fresh folder. Mounting needs root (CI runs as
 * root on its own machine); elsewhere `dir` is undefined and the tests that need it are skipped.
 */
export class SmallDisk {
  readonly dir: string | undefined;

  constructor(size = '8m') {
    const dir = mkdtempSync(join(tmpdir(), 'small-disk-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
      this.dir = dir;
    } catch {
      this.dir = undefined;
    }
  }

  /** Fills what is left of the disk; the function it returns frees it again. */
  fill(): () => void {
    if (!this.dir) throw new Error('no disk mounted');
    const filler = join(this.dir, `filler-${Date.now()}`);
    const fd = openSync(filler, 'a');
    try {
      for (;;) writeSync(fd, Buffer.alloc(64 * 1024, 1));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(fd);
    }
    return () => rmSync(filler);
  }

  unmount(): void {
    if (this.dir) execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
  }
}
