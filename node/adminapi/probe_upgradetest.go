//go:build upgradetest

package adminapi

import (
	"net/http"

	"parley/cluster/schema"
)

// The upgrade probe's route, in binaries built with -tags upgradetest only
// (schema.UpgradeProbe): the root applies the probe.
func init() {
	testRoutes = append(testRoutes, testRoute{"POST /v1/admin/cluster/upgrade-probe", func(a *API) handlerFunc {
		return func(r *http.Request, p principal) (any, error) {
			if err := root(p); err != nil {
				return nil, err
			}
			return a.cfg.Cluster.Apply(r.Context(), schema.UpgradeProbe{Note: "probe"})
		}
	}})
}
