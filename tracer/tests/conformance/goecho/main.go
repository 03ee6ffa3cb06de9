// The classic Go TCP echo pair, as the Go tutorials write it: a server on a dual-stack
// listener (net.Listen("tcp", ":PORT")), a goroutine per connection, netpoll (epoll,
// non-blocking sockets) underneath; and a client that sends lines and reads each reply.
//
//	goecho server PORT
//	goecho client HOST:PORT MESSAGE...
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
)

func serve(port string) error {
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				msg := strings.TrimSuffix(line, "\n")
				if _, err := fmt.Fprintf(c, "your message is%s\n", msg); err != nil {
					return
				}
			}
		}(conn)
	}
}

func client(addr string, messages []string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, m := range messages {
		if _, err := fmt.Fprintf(c, "%s\n", m); err != nil {
			return err
		}
		reply, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		fmt.Print(reply)
	}
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "server":
		err = serve(os.Args[2])
	case len(os.Args) >= 3 && os.Args[1] == "client":
		err = client(os.Args[2], os.Args[3:])
	default:
		err = fmt.Errorf("usage: goecho server PORT | goecho client HOST:PORT MESSAGE...")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
