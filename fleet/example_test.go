package fleet_test

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/fleet"
)

// One dedicated client for every Redis-backed layer. Construction does no
// I/O, so this works while Redis is down.
func ExampleNewClient() {
	fc := fleet.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer fc.Close()
	o := fc.Options()
	fmt.Println(o.ReadTimeout, o.MaxRetries, o.ContextTimeoutEnabled) // MaxRetries 0 once built: no retries
	// Output: 50ms 0 true
}

func ExampleNewClusterClient() {
	fc := fleet.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000"}})
	defer fc.Close()
	fmt.Println(fc.Options().ReadTimeout)
	// Output: 50ms
}

func ExampleNewUniversalClient() {
	fc := fleet.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	defer fc.Close()
	fmt.Printf("%T\n", fc)
	// Output: *redis.Client
}

func ExampleParseURL() {
	fc, err := fleet.ParseURL("redis://127.0.0.1:6379/0")
	if err != nil {
		panic(err)
	}
	defer fc.Close()
	fmt.Println(fc.Options().DialTimeout)
	// Output: 50ms
}
