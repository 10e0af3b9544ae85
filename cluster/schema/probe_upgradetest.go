//go:build upgradetest

package schema

// The upgrade probe exists only in binaries built with -tags upgradetest,
// for the rolling-upgrade test (e2e TestRollingUpgrade): a command that
// changes no state, introduced at this build's ProtocolVersion, so that
// the test sees a command newer than the previous release refused while a
// node of that release remains and accepted once none does. Type 127 (the
// last without SkippableFlag) is never used by a real command.

// TypeUpgradeProbe is the probe's type.
const TypeUpgradeProbe CommandType = 127

// UpgradeProbe changes nothing (NoEffect).
type UpgradeProbe struct {
	Note string `json:"note"`
}

func (UpgradeProbe) Type() CommandType { return TypeUpgradeProbe }
func (UpgradeProbe) Validate() error   { return nil }

// NoEffect marks a command whose application changes no state.
func (UpgradeProbe) NoEffect() {}

func init() {
	commands[TypeUpgradeProbe] = commandInfo{"upgrade_probe", func() Command { return &UpgradeProbe{} }, false, ProtocolVersion}
}
