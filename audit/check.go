package audit

import (
	"errors"
	"io/fs"
	"os"

	"github.com/vmcp/vmcp/config"
)

// CheckOutput reports whether NewWriter could open cfg.Output, without
// writing to it or leaving anything behind: an existing file is opened for
// appending and closed unchanged; for a missing one, the file is created
// (exclusively, so nobody else's file is touched) and removed again. A
// FIFO or device that exists passes unopened. stdout and stderr always
// pass. cfg.Enabled is not consulted.
func CheckOutput(cfg config.Audit) error {
	switch cfg.Output {
	case "", "stdout", "stderr":
		return nil
	}
	fi, err := os.Stat(cfg.Output)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return checkCreate(cfg.Output)
	case err != nil:
		return err
	case !fi.Mode().IsRegular() && !fi.IsDir():
		// A FIFO or a device is not opened: the open could block until a
		// reader comes, and that reader would see end of file at the close.
		return nil
	}
	f, err := os.OpenFile(cfg.Output, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkCreate creates path, which did not exist, and removes it again.
func checkCreate(path string) error {
	f, err := os.OpenFile(path, fileFlags|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Created meanwhile by someone else: appending is what counts.
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	if err != nil {
		return err
	}
	return errors.Join(f.Close(), os.Remove(path))
}
