"""Packaging. The twistd plugin ships as a single module in Twisted's
``twisted.plugins`` namespace: no ``__init__.py`` in ``twisted/`` (that
would shadow Twisted's own), as Twisted's plugin documentation says."""

from setuptools import Extension, find_packages, setup

setup(
    name="relaychat",
    version="0.1.0",
    description="Self-hosted relay for end-to-end encrypted chat, built on Twisted",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"]) + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["relaychat_plugin.py"],
        # the browser client, served byte for byte (relaychat/web)
        "relaychat.web": ["package.json", "vendor.mjs", "static/**/*"],
    },
    install_requires=[
        "Twisted[tls,conch]>=24.7",
        "pyOpenSSL>=24.0",
        "service-identity>=24.1",
        "cryptography>=42",
        "autobahn>=24.4",
        "prometheus_client>=0.20",  # /metrics: the ecosystem's own exposition, not a hand-written one
        "websockets>=12",  # its C apply_mask unmasks WebSocket frames (relaychat/server/wsframes.py)
        "pybase64>=1.3",
    ],
    extras_require={
        # selenium drives Debian's chromium-driver in the browser-client tests (it downloads nothing);
        # hypothesis drives tests/test_hub_property.py; txredisapi the cluster tests (tests/test_cluster.py);
        # mypy and mypy-zope (the plugin Twisted is checked with) type-check relaychat/ (tests/test_types.py,
        # .ci/run): pinned, since a newer checker finds new errors in unchanged code; raise them with the fixes
        "test": ["noiseprotocol==0.3.1", "websockets>=12", "docutils", "selenium>=4.10", "hypothesis>=6",
                 "txredisapi>=1.4.10", "mypy==2.4.1", "mypy-zope==1.0.17"],
        # [cluster]: several relays as one over Redis (relaychat.cluster); txredisapi keeps Twisted's reactor
        "cluster": ["txredisapi>=1.4.10", "hiredis>=2"],  # hiredis: txredisapi parses replies in C with it
    },
    # The WebSocket frame loops in C (relaychat/server/wsframes.c): a top-level module, since the
    # tests run from the checkout, whose relaychat/ shadows the installed package. optional: without
    # a compiler the install still works and wsframes.py runs its Python loops (the daemon logs which);
    # tests.test_wsframes_compiled fails then unless RELAYCHAT_TEST_WITHOUT_C=1 says it is expected.
    ext_modules=[Extension("_relaychat_wsframes", ["relaychat/server/wsframes.c"], optional=True)],
    entry_points={"console_scripts": [
        "relaychat = relaychat.chat.cli:main",
        "relaychat-web = relaychat.web.serve:main",
    ]},
)
