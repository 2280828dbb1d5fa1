//go:build chaos

package chaos

import (
	"net"
	"time"
)

func netDialer() net.Dialer { return net.Dialer{Timeout: 300 * time.Millisecond} }
