// Go net/http ServeMux backend for the differential suite (standard library only).
//
// Routing, path cleaning (ServeMux redirects unclean paths) and the admin.internal host
// pattern are ServeMux's own; a wrapper honours X-HTTP-Method-Override and X-Original-URL
// as some Go middlewares do. Answers with what it resolved.
package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
)

func report(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		served, org := route, interface{}(nil)
		if route == "orgs" {
			// The tenant is the first segment under /orgs/ of the (decoded) path.
			seg := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/orgs/"), "/", 2)[0]
			if seg == "" {
				served = "root"
			} else {
				org = seg
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]interface{}{
			"backend": "go",
			"route":   served,
			"org":     org,
			"orgs":    nullable(r.Header.Values("X-Auth-Organizations")),
			"method":  r.Method,
			"host":    r.Host,
			"scopes":  nullable(r.Header.Values("X-Auth-Scopes")),
			"subject": nullable(r.Header.Values("X-Auth-Subject")),
		})
	}
}

func nullable(v []string) interface{} {
	if len(v) == 0 {
		return nil
	}
	return strings.Join(v, ",")
}

func main() {
	mux := http.NewServeMux()
	for _, name := range []string{"public", "admin", "wallets"} {
		mux.HandleFunc("/"+name, report(name))
		mux.HandleFunc("/"+name+"/", report(name))
	}
	mux.HandleFunc("/orgs/", report("orgs"))
	mux.HandleFunc("/", report("root"))
	mux.HandleFunc("admin.internal/", report("vhost-admin"))
	overrides := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := r.Header.Get("X-HTTP-Method-Override"); m != "" {
			r.Method = strings.ToUpper(m)
		}
		if u := r.Header.Get("X-Original-URL"); u != "" {
			r.URL.Path = strings.SplitN(u, "?", 2)[0]
			r.URL.RawPath = ""
		}
		mux.ServeHTTP(w, r)
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], overrides)
}
