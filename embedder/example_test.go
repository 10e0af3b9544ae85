package embedder_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"parley/embedder"
)

// A node starts the embedder once; without the assets it keeps serving chat
// with the feature off and says why.
func ExampleNew() {
	e, err := embedder.New(embedder.Config{}) // PARLEY_ORT_LIB / PARLEY_MODEL_DIR or the make cache
	if errors.Is(err, embedder.ErrUnavailable) {
		log.Printf("similar conversations off: %v", err)
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	idx := embedder.NewIndex(e.Dim())
	vecs, err := e.Embed(context.Background(), []string{
		"I forgot my password, how can I change it?",
		"Where is my parcel?",
	})
	if err != nil {
		log.Fatal(err)
	}
	idx.Add("conv-1", vecs[0])
	idx.Add("conv-2", vecs[1])
	q, _ := e.Embed(context.Background(), []string{"How do I reset my password?"})
	for _, h := range idx.Search(q[0], 1) {
		fmt.Println(h.ID)
	}
}
