import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let mountable: boolean | undefined;

/**
 * A real disk that fills up: a tmpfs of a given size mounted on a fresh folder. Mounting needs root (CI
 * runs as root on its own machine); where it is not allowed, `SmallDisk.available()` is false and the
 * tests that need one are skipped. Mount one inside the test and unmount it in `finally`.
 */
export class SmallDisk {
  private constructor(readonly dir: string) {}

  /** Whether this process may mount a tmpfs (tried once, on a folder of its own, and undone). */
  static available(): boolean {
    if (mountable === undefined) {
      try {
        SmallDisk.mount('64k').unmount();
        mountable = true;
      } catch {
        mountable = false;
      }
    }
    return mountable;
  }

  static mount(size: string): SmallDisk {
    const dir = mkdtempSync(join(tmpdir(), 'small-disk-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    } catch (err) {
      rmdirSync(dir);
      throw err;
    }
    return new SmallDisk(dir);
  }

  /** Fills what is left of the disk; the function it returns frees it again. */
  fill(): () => void {
    const filler = join(this.dir, `filler-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    const fd = openSync(filler, 'a');
    try {
      for (;;) writeSync(fd, Buffer.alloc(64 * 1024, 1));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(fd);
    }
    return () => rmSync(filler, { force: true });
  }

  /** Lazily (files still open on it go with it), then removes the folder. */
  unmount(): void {
    execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
    rmdirSync(this.dir);
  }
}
