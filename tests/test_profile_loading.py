"""The Hypothesis profile loads when Hypothesis does: a session without properties never imports it."""

from __future__ import annotations


def test_a_session_without_properties_never_imports_hypothesis(clean_pytester):
    clean_pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            with open("imported.txt", "w") as f:
                f.write(str("hypothesis" in sys.modules))
        """
    )
    clean_pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert (clean_pytester.path / "imported.txt").read_text() == "False"


def test_a_property_runs_under_the_chosen_profile(clean_pytester):
    clean_pytester.makepyfile(
        test_property="""
        from hypothesis import given, settings, strategies as st

        def test_profile_loaded():
            assert settings._current_profile == "xcomsim-thorough"
            assert settings().max_examples == 1000 and settings().deadline is None

        @given(st.integers())
        def test_property(x):
            assert isinstance(x, int)
        """
    )
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-profile=thorough", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_a_fixture_that_imports_hypothesis_late_gets_the_profile(clean_pytester):
    clean_pytester.makepyfile(
        test_late="""
        import sys

        def test_late_import():
            assert "hypothesis" not in sys.modules
            from hypothesis import settings
            assert settings._current_profile == "xcomsim-ci"
        """
    )
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-profile=ci", "-p", "no:randomly")
    result.assert_outcomes(passed=1)



def test_garbage_left_in_a_cycle_is_still_finalised_at_exit(clean_pytester):
    """The heap is frozen only after pytest's last collections: a finaliser left in a cycle still runs."""
    out = clean_pytester.path / "finalised.txt"
    clean_pytester.makepyfile(
        test_cycle=f"""
        class Holder:
            def __del__(self):
                with open({str(out)!r}, "a") as f:
                    f.write("finalised;")

        def test_leaves_a_cycle_behind():
            import gc

            gc.disable()  # nothing collects it before the exit
            holder = Holder()
            holder.me = holder
        """
    )
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert out.read_text() == "finalised;"
