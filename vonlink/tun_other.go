//go:build !linux

package vonlink

func supported() error { return ErrUnsupported }

func openDevice(deviceConfig) (device, error) { return nil, ErrUnsupported }
