// Package peers starts real third-party servers inside a lab namespace for
// integration tests: the proofs that the host drives software nobody here
// wrote. Each server is a child process started from a thread switched
// into the lab's namespace (so it lives there, with the lab's addresses),
// with a configuration file generated in the test's temporary directory,
// and killed and waited for in t.Cleanup.
//
//	Mosquitto  mosquitto (Debian "mosquitto"): a plain and a TLS listener,
//	           every log line in a file the test reads (connections,
//	           PINGREQ, PUBACK, keep-alive timeouts).
//	Publish    mosquitto_pub (Debian "mosquitto-clients"): one publish
//	           from another client, QoS 0 or 1, MQTT 3.1.1 or 5.
//	NodeWS     a WebSocket server of a few lines of JavaScript on the
//	           Debian "node-ws" module (/usr/bin/node from "nodejs"): it
//	           pushes a message on request and, when the client asks in
//	           the URL (?ping=MS), sends Pings on a timer.
//	Nginx      nginx (Debian "nginx-light") as a WebSocket reverse proxy in
//	           front of NodeWS, plain and TLS, with a proxy_read_timeout
//	           the test chooses.
//	RawService a plain TCP service (Go, in the test process, in the
//	           namespace): it answers an app-defined keep-alive request
//	           with its reply, closes a connection idle for longer than
//	           its timeout, and writes pushes on request.
//	CA         a test CA made with crypto/x509 and server certificates
//	           for the lab's addresses.
//
// A missing binary fails the test (t.Fatal) naming the Debian package, so CI
// without it is a failure, not a skip. Nothing here is imported by product
// packages.
package peers
