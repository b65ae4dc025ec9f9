package action

import "github.com/writ-sec/writ/internal/playbook"

// RequestFor builds the request of a playbook for an operation, with its
// targets in canonical form (e.g. compressed IPv6) so backends and plans see
// one spelling per target.
func RequestFor(pb *playbook.Playbook, op Operation) Request {
	kind := playbook.Builtin[pb.Spec.Action]
	targets := make([]string, len(pb.Spec.Targets))
	for i, t := range pb.Spec.Targets {
		targets[i] = t
		if kind == playbook.TargetIP {
			if p, err := playbook.ParseIPTarget(t); err == nil {
				if p.IsSingleIP() {
					targets[i] = p.Addr().String()
				} else {
					targets[i] = p.String()
				}
			}
		}
	}
	return Request{
		Playbook:    pb.Metadata.Name,
		Digest:      pb.Digest,
		Action:      pb.Spec.Action,
		Environment: pb.Spec.Environment,
		Operation:   op,
		Targets:     targets,
		Params:      pb.Spec.Params,
	}
}
