package topology

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// rateUnits maps a lower-cased unit suffix to its multiplier in bit/s. Multipliers are
// decimal (SI), as in tc: 1Mbit = 1,000,000 bit/s.
var rateUnits = map[string]float64{
	"":     1,
	"bit":  1,
	"k":    1e3,
	"kbit": 1e3,
	"m":    1e6,
	"mbit": 1e6,
	"g":    1e9,
	"gbit": 1e9,
	"t":    1e12,
	"tbit": 1e12,
}

// ParseRate parses a bandwidth such as "100Mbit", "1.5G", "500kbit" or "64000" into
// bits per second. Suffixes are decimal and case-insensitive; "bps" forms are rejected
// because tc reads them as bytes per second and the ambiguity has bitten operators.
func ParseRate(s string) (uint64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty rate: want bit/s such as 100Mbit")
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	if num == "" {
		return 0, fmt.Errorf("rate %q does not start with a number: want bit/s such as 100Mbit", s)
	}
	lu := strings.ToLower(unit)
	mult, ok := rateUnits[lu]
	if !ok {
		if strings.HasSuffix(lu, "bps") || strings.HasSuffix(lu, "b/s") {
			return 0, fmt.Errorf("rate %q: unit %q is ambiguous (tc reads bps as bytes/s); write bits, e.g. %sMbit", s, unit, num)
		}
		return 0, fmt.Errorf("rate %q: unknown unit %q: use bit, kbit, Mbit, Gbit or Tbit (or k, M, G, T)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: bad number %q", s, num)
	}
	bps := v * mult
	if bps > math.MaxUint64/2 || math.IsInf(bps, 0) {
		return 0, fmt.Errorf("rate %q is too large", s)
	}
	if bps != math.Trunc(bps) {
		return 0, fmt.Errorf("rate %q is not a whole number of bit/s", s)
	}
	return uint64(bps), nil
}

// FormatRate renders bit/s with the largest unit that keeps the number exact
// (10000000 → "10Mbit", 1500000 → "1500kbit", 1234 → "1234bit").
func FormatRate(bps uint64) string {
	for _, u := range []struct {
		div  uint64
		name string
	}{{1e12, "Tbit"}, {1e9, "Gbit"}, {1e6, "Mbit"}, {1e3, "kbit"}} {
		if bps >= u.div && bps%u.div == 0 {
			return strconv.FormatUint(bps/u.div, 10) + u.name
		}
	}
	return strconv.FormatUint(bps, 10) + "bit"
}
