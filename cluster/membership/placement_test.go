package membership

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func members(regions ...string) []Member {
	var out []Member
	for i, r := range regions {
		out = append(out, Member{ID: fmt.Sprintf("n%d", i+1), Region: r})
	}
	return out
}

func ids(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestReplicasProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		regions := rapid.SliceOfN(rapid.SampledFrom([]string{"eu", "us", "ap"}), 1, 9).Draw(t, "regions")
		all := members(regions...)
		key := rapid.StringMatching(`c_[0-9a-f]{24}`).Draw(t, "key")
		region := rapid.SampledFrom([]string{"", "eu", "us", "ap"}).Draw(t, "region")
		rf := rapid.IntRange(1, 5).Draw(t, "rf")
		got := Replicas(all, key, region, rf)

		// The right number, all distinct, all in the region.
		n := 0
		for _, m := range all {
			if region == "" || m.Region == region {
				n++
			}
		}
		if len(got) != min(rf, n) {
			t.Fatalf("%d replicas of %d candidates, rf %d", len(got), n, rf)
		}
		seen := map[string]bool{}
		for _, m := range got {
			if seen[m.ID] || (region != "" && m.Region != region) {
				t.Fatalf("replicas %v for region %q", ids(got), region)
			}
			seen[m.ID] = true
		}
		// The member order does not matter: every node computes the same.
		shuffled := slices.Clone(all)
		slices.Reverse(shuffled)
		if !slices.Equal(ids(Replicas(shuffled, key, region, rf)), ids(got)) {
			t.Fatal("placement depends on the order of the members")
		}
		// Losing a member moves only what it held: the others keep their
		// place, in order.
		gone := rapid.IntRange(0, len(all)-1).Draw(t, "gone")
		rest := slices.Delete(slices.Clone(all), gone, gone+1)
		after := Replicas(rest, key, region, rf)
		var kept []string
		for _, id := range ids(got) {
			if id != all[gone].ID {
				kept = append(kept, id)
			}
		}
		if !slices.Equal(ids(after)[:len(kept)], kept) {
			t.Fatalf("removing %s moved %v to %v", all[gone].ID, ids(got), ids(after))
		}
	})
}

func TestReplicasSpreadEvenly(t *testing.T) {
	t.Parallel()
	all := members("eu", "eu", "eu", "eu", "eu")
	first := map[string]int{}
	const keys = 10000
	for i := range keys {
		first[Replicas(all, fmt.Sprintf("c_%024x", i), "eu", 3)[0].ID]++
	}
	for _, m := range all {
		if share := float64(first[m.ID]) / keys; share < 0.17 || share > 0.23 {
			t.Errorf("%s is the first replica of %.1f%% of the keys, want about 20%%", m.ID, 100*share)
		}
	}
}
