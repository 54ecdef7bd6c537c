package localstore_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/concordrpc/concord/coord/localstore"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "localstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := localstore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// A read-modify-write: retried automatically if it conflicts.
	incr := func(tx *localstore.Tx) error {
		n := 0
		v, err := tx.Get([]byte("visits"))
		switch {
		case errors.Is(err, localstore.ErrNotFound):
		case err != nil:
			return err
		default:
			if n, err = strconv.Atoi(string(v)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("visits"), []byte(strconv.Itoa(n+1)))
	}
	for range 3 {
		if err := store.Update(incr); err != nil {
			log.Fatal(err)
		}
	}

	v, err := store.Get([]byte("visits"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("visits:", string(v))
	_, err = store.Get([]byte("missing"))
	fmt.Println(errors.Is(err, localstore.ErrNotFound))
	// Output:
	// visits: 3
	// true
}
