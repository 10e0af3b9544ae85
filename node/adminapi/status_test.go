package adminapi

import (
	"fmt"
	"net/http"
	"testing"

	"parley/cluster"
)

// A change refused during a rolling upgrade answers 409 cluster_upgrading
// with the control plane's message (which names the versions).
func TestClusterUpgradingIsAConflict(t *testing.T) {
	t.Parallel()
	e := clusterErr(fmt.Errorf("%w: upgrade_probe needs protocol version 2", cluster.ErrClusterUpgrading))
	if e.Status != http.StatusConflict || e.Code != "cluster_upgrading" || e.Message != "cluster upgrading: upgrade_probe needs protocol version 2" {
		t.Fatalf("%+v", e)
	}
}
