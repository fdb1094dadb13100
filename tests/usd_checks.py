"""USD compliance as usd-core offers it: ``UsdUtils.ComplianceChecker`` up to usd-core 25,
its successor ``UsdValidation`` (all registered validators, UsdPhysics ones included) from 26."""

from __future__ import annotations

from pathlib import Path


def usd_compliance_errors(path: Path) -> list[str]:
    from pxr import Usd, UsdUtils

    if hasattr(UsdUtils, "ComplianceChecker"):  # usd-core < 26
        checker = UsdUtils.ComplianceChecker(
            arkit=False, skipARKitRootLayerCheck=False, rootPackageOnly=False, skipVariants=False, verbose=False
        )
        checker.CheckCompliance(str(path))
        print("ComplianceChecker warnings:", checker.GetWarnings(), "failed:", checker.GetFailedChecks())
        return list(checker.GetErrors())
    from pxr import UsdValidation

    validators = UsdValidation.ValidationRegistry().GetOrLoadAllValidators()
    assert len(validators) > 10, "usd-core registered no validators"
    found = UsdValidation.ValidationContext(validators).Validate(Usd.Stage.Open(str(path)))
    print(f"UsdValidation ({len(validators)} validators):", [e.GetErrorAsString() for e in found] or "nothing")
    return [e.GetErrorAsString() for e in found if e.GetType() == UsdValidation.ValidationErrorType.Error]
