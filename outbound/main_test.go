package outbound

import (
	"flag"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

// waitingParallelism is how many parallel tests run at once in this package
// unless -parallel says otherwise. The tests marked parallel here spend their
// time waiting (a vendor's Retry-After, a stream's pauses, Redis round
// trips), not computing, so more of them than the 2 cores overlap their
// waits; every one of them has its own vendor, client and Redis keys.
const waitingParallelism = 4

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if f := flag.Lookup("test.parallel"); f != nil && !set {
		if n := f.Value.(flag.Getter).Get().(int); n < waitingParallelism {
			_ = f.Value.Set(strconv.Itoa(waitingParallelism))
		}
	}
	goleak.VerifyTestMain(m)
}
