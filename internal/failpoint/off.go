//go:build !failpoints

package failpoint

// Hit does nothing: this binary was built without the failpoints tag.
func Hit(string) {}

// Enabled says whether this build honours failpoints.
const Enabled = false
