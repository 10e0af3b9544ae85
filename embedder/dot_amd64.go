package embedder

import "golang.org/x/sys/cpu"

//go:noescape
func dotAVX2(a, b []float32) float32

var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dot is the inner product of a and b[:len(a)].
func dot(a, b []float32) float32 {
	if useAVX2 {
		return dotAVX2(a, b[:len(a)])
	}
	return dotGo(a, b)
}
