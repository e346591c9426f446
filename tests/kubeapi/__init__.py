"""A test double of the Kubernetes API server, backed by a real etcd (issue 20).

No kube-apiserver can be obtained on these machines (``docs/testing-kubernetes.md`` says what
was tried), yet lhtrio's Kubernetes store, its CRDs and its ``deploy/`` manifests must be tested
against something that speaks the real protocol. This package is that something: never shipped,
imported only by tests. It is proven by the real ``kubectl`` (``test_kubectl.py``), by lightkube
(``test_lightkube.py``) and by raw HTTP (``test_protocol.py``).

Modules, sans-I/O first:

* :mod:`.status` — errors as Kubernetes ``Status`` objects;
* :mod:`.resources` — the built-in resources served and those a CRD adds;
* :mod:`.selectors`, :mod:`.patch`, :mod:`.fields`, :mod:`.rules` — label and field selectors,
  merge / JSON / strategic-merge patches, managed fields and server-side apply, and what a
  create, update or delete does to an object;
* :mod:`.schemas`, :mod:`.openapi`, :mod:`.table` — validation (upstream schemas for the
  built-ins, the CRD's ``openAPIV3Schema`` for custom resources), the OpenAPI documents kubectl
  reads, and the Table format of ``kubectl get``;
* :mod:`.etcd` — objects in etcd (keys, guarded transactions, watches), over lhtrio's own etcd
  client;
* :mod:`.handlers`, :mod:`.app`, :mod:`.server` — the verbs, the ASGI app and its router,
  and :func:`~.server.serve_kubeapi` on hypercorn's trio worker.
"""
